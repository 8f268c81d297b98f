//! Produce: validate and append each partition's batches, then answer once they are written
//! (and, when the flush policy asks, fsynced: appends that arrive while an fsync runs share the
//! next one).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::Shared;
use crate::conn::Reply;
use crate::errors::{c, code};
use crate::frame::encode_response;

/// An fsync started for (topic index, partition index) of the response.
type PendingSync = (
    usize,
    usize,
    tokio::sync::oneshot::Receiver<Result<(), String>>,
);

pub(crate) fn handle(shared: &Arc<Shared>, req: ProduceRequest, version: i16, corr: i32) -> Reply {
    let acks = req.acks;
    let mut resp = ProduceResponse::default();
    let mut syncs: Vec<PendingSync> = Vec::new();
    let bad_acks = !(-1..=1).contains(&acks);
    let transactional = req.transactional_id.is_some();
    let mut appended_any = false; // with records readers can see already
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        for (pi, p) in topic.partition_data.into_iter().enumerate() {
            let mut pr = PartitionProduceResponse::default();
            pr.index = p.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            if bad_acks {
                pr.error_code = c(ResponseError::InvalidRequiredAcks);
            } else if name == crate::groups::OFFSETS_TOPIC {
                // Only the coordinator writes its own topic.
                pr.error_code = c(ResponseError::InvalidTopicException);
            } else if transactional {
                pr.error_code = c(ResponseError::TransactionalIdAuthorizationFailed);
            } else {
                let records = p.records.unwrap_or_default();
                match shared.storage.append(&name, p.index, &records) {
                    Ok(info) => {
                        // Records readers cannot see before the fsync wake them from there.
                        appended_any |= info.visible;
                        pr.base_offset = info.base_offset;
                        if version >= 2 {
                            pr.log_append_time_ms = info.log_append_time_ms;
                        }
                        if version >= 5 {
                            pr.log_start_offset = info.log_start_offset;
                        }
                        if info.needs_sync {
                            // Requested even for acks=0: in batch mode the fsync is what makes
                            // the records visible to consumers.
                            let done = shared.syncer.request(&name, p.index, info.last_offset + 1);
                            if acks != 0 {
                                syncs.push((ti, pi, done));
                            }
                        }
                    }
                    Err(e) => {
                        if matches!(e, weir_log::LogError::Io(_)) && storage_error_log_due() {
                            // A full or failing disk: loud, but at most once a second.
                            tracing::error!(topic = %name, partition = p.index, error = %e, "cannot write to the log; produce refused");
                        } else {
                            tracing::debug!(topic = %name, partition = p.index, error = %e, "produce refused");
                        }
                        pr.error_code = code(&e);
                        if version >= 8 {
                            pr.error_message = Some(e.to_string().into());
                            if let weir_log::LogError::RecordsRejected { records, .. } = &e {
                                pr.record_errors = records
                                    .iter()
                                    .map(|(i, m)| {
                                        let mut r = BatchIndexAndErrorMessage::default();
                                        r.batch_index = *i;
                                        r.batch_index_error_message = Some(m.clone().into());
                                        r
                                    })
                                    .collect();
                            }
                        }
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    if appended_any {
        shared.appended.notify_waiters();
    }
    Box::pin(async move {
        for (ti, pi, h) in syncs {
            let failed = match h.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("the fsync thread has stopped".to_string()),
            };
            if let Some(e) = failed {
                tracing::error!(error = %e, "fsync failed; produce not acknowledged");
                let pr = &mut resp.responses[ti].partition_responses[pi];
                pr.error_code = c(ResponseError::KafkaStorageError);
                pr.base_offset = -1;
            }
        }
        if acks == 0 {
            return Ok(None);
        }
        encode_response(corr, version, &resp).map(Some)
    })
}

/// True at most once per second, so a failing disk is reported without flooding the log.
fn storage_error_log_due() -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = weir_log::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    now - last >= 1000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
