//! Fetch (with long polling) and ListOffsets.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use weir_log::LogError;

use crate::Shared;
use crate::conn::Reply;
use crate::errors::{NONE, c, code};
use crate::frame::encode_response;

/// Longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn handle(shared: Arc<Shared>, req: FetchRequest, version: i16, corr: i32) -> Reply {
    Box::pin(async move {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        loop {
            let notified = shared.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (resp, bytes, errored) = read_once(&shared, &req, version);
            if bytes >= min_bytes.max(1) || errored || tokio::time::Instant::now() >= deadline {
                return encode_response(corr, version, &resp).map(Some);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    })
}

fn read_once(shared: &Shared, req: &FetchRequest, version: i16) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    // The client's limit, capped by the broker's (but never below what the client waits for).
    let asked = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let cap = shared
        .cfg
        .fetch_max_bytes
        .max(req.min_bytes.max(0) as usize);
    let max_total = asked.min(cap);
    let mut total = 0usize;
    let mut errored = false;
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let mut tr = FetchableTopicResponse::default();
        tr.topic = t.topic.clone();
        tr.topic_id = t.topic_id;
        for p in &t.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.preferred_read_replica = BrokerId(-1);
            // Fields a version lacks must keep their defaults, or encoding fails.
            let has_log_start = version >= 5;
            pd.aborted_transactions = Some(Vec::new());
            pd.records = Some(Default::default());
            // KIP-74: until some partition has returned data, the first batch may exceed both
            // limits so that the consumer always makes progress; after that, every batch must
            // fit in what is left of the response and in its partition's limit.
            let limit = (p.partition_max_bytes.max(0) as usize).min(max_total - total);
            let min_one = total == 0;
            let result = if limit == 0 && !min_one {
                shared
                    .storage
                    .offsets(&name, p.partition)
                    .map(|o| (None, o.log_end, o.log_start))
            } else {
                shared
                    .storage
                    .read(&name, p.partition, p.fetch_offset, limit, min_one)
                    .map(|r| (Some(r.records), r.high_watermark, r.log_start_offset))
            };
            match result {
                Ok((records, hw, start)) => {
                    pd.high_watermark = hw;
                    pd.last_stable_offset = hw;
                    if has_log_start {
                        pd.log_start_offset = start;
                    }
                    if let Some(records) = records {
                        total = (total + records.len()).min(max_total);
                        pd.records = Some(records);
                    }
                }
                Err(e) => {
                    errored = true;
                    pd.error_code = code(&e);
                    if let LogError::OffsetOutOfRange {
                        log_start, log_end, ..
                    } = e
                    {
                        pd.high_watermark = log_end;
                        pd.last_stable_offset = log_end;
                        if has_log_start {
                            pd.log_start_offset = log_start;
                        }
                    }
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total, errored)
}

pub(crate) fn list_offsets(
    shared: &Shared,
    req: ListOffsetsRequest,
    version: i16,
    corr: i32,
) -> Result<bytes::Bytes, String> {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            if version >= 4 {
                pr.leader_epoch = 0;
            }
            let found = match p.timestamp {
                -1 => shared
                    .storage
                    .offsets(&name, p.partition_index)
                    .map(|o| Some((o.log_end, -1))),
                -2 => shared
                    .storage
                    .offsets(&name, p.partition_index)
                    .map(|o| Some((o.log_start, -1))),
                -3 => shared
                    .storage
                    .offset_for_timestamp(&name, p.partition_index, -3),
                ts if ts >= 0 => shared
                    .storage
                    .offset_for_timestamp(&name, p.partition_index, ts),
                _ => Err(LogError::InvalidRecord(format!(
                    "unsupported timestamp query {}",
                    p.timestamp
                ))),
            };
            match found {
                Ok(Some((off, ts))) => {
                    pr.offset = off;
                    pr.timestamp = ts;
                    pr.error_code = NONE;
                }
                Ok(None) => {}
                Err(LogError::InvalidRecord(_)) => pr.error_code = c(ResponseError::InvalidRequest),
                Err(e) => pr.error_code = code(&e),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    encode_response(corr, version, &resp)
}
