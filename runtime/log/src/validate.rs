//! What an append does to a request's batches before they are written, shared by both engines:
//! the topic's rules are checked (batch size, no transactions, keys on compacted topics,
//! CreateTime bounds) and its config applied (`compression.type` recompresses,
//! `message.timestamp.type=LogAppendTime` stamps the batch). Batches that need none of it are
//! passed through as borrowed slices, byte for byte as the producer sent them.

use std::borrow::Cow;

use crate::batch::{self, BatchHeader};
use crate::codec::{self, RecordView};
use crate::config::{TimestampType, TopicConfig};
use crate::{LogError, RejectKind};

/// Batches ready to be written, with what the append reports.
#[derive(Debug)]
pub(crate) struct Prepared<'a> {
    pub batches: Vec<(BatchHeader, Cow<'a, [u8]>)>,
    /// Records in all batches.
    pub records: u64,
    /// The LogAppendTime stamp, or -1.
    pub log_append_time_ms: i64,
}

impl Prepared<'_> {
    /// Total bytes of the batches.
    pub fn bytes(&self) -> u64 {
        self.batches.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The batches as the segment writer takes them.
    pub fn parts(&self) -> Vec<(BatchHeader, &[u8])> {
        self.batches.iter().map(|(h, b)| (*h, &b[..])).collect()
    }
}

/// Checks and transforms the batches of one produce request for one partition (`tp` names
/// it in errors).
pub(crate) fn prepare<'a>(
    records: &'a [u8],
    config: &TopicConfig,
    now_ms: i64,
    tp: (&str, i32),
) -> Result<Prepared<'a>, LogError> {
    let split = batch::split_validated(records)?;
    if split.is_empty() {
        return Err(LogError::InvalidRecord(
            "no record batch in the request".into(),
        ));
    }
    let log_append = config.timestamp_type == TimestampType::LogAppendTime;
    let mut out = Prepared {
        batches: Vec::with_capacity(split.len()),
        records: 0,
        log_append_time_ms: if log_append { now_ms } else { -1 },
    };
    for (h, range) in split {
        if h.is_transactional() || h.is_control() {
            return Err(LogError::InvalidRecord(
                "transactional batches are not supported".into(),
            ));
        }
        let sent = &records[range];
        let recompress_to = config.compression.codec().filter(|&c| c != h.compression());
        let mut bytes: Cow<'a, [u8]> = Cow::Borrowed(sent);
        if recompress_to.is_some() || config.validates_records() {
            let section = codec::records_section(&h, sent)?;
            check_records(&h, &section, config, now_ms, tp)?;
            if let Some(codec_id) = recompress_to {
                let packed =
                    codec::compress(codec_id, config.compression_level(codec_id), &section)?;
                bytes = Cow::Owned(batch::with_records_section(sent, &h, codec_id, &packed));
            }
        }
        if log_append {
            batch::stamp_log_append_time(bytes.to_mut(), now_ms);
        }
        if bytes.len() as u64 > config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                size: bytes.len(),
                max: config.max_message_bytes,
            });
        }
        let header = match &bytes {
            Cow::Borrowed(_) => h,
            Cow::Owned(b) => BatchHeader::parse(b).ok_or_else(|| {
                LogError::CorruptBatch("a rewritten batch lost its header".into())
            })?,
        };
        out.records += header.record_count as u64;
        out.batches.push((header, bytes));
    }
    Ok(out)
}

/// Kafka rejects the whole batch when any record breaks a rule, lists every bad record, and
/// answers INVALID_TIMESTAMP if any of them has a bad timestamp, else INVALID_RECORD.
fn check_records(
    h: &BatchHeader,
    section: &[u8],
    config: &TopicConfig,
    now_ms: i64,
    tp: (&str, i32),
) -> Result<(), LogError> {
    let compacted = config.cleanup_policy.compact;
    let create_time = config.timestamp_type == TimestampType::CreateTime;
    let (before, after) = (
        config.timestamp_before_limit(),
        config.timestamp_after_limit(),
    );
    let mut errors = Vec::new();
    let mut bad_timestamp = false;
    codec::for_each_record(h, section, |r: RecordView| {
        if compacted && !r.has_key {
            errors.push((
                r.index,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {}-{}",
                    tp.0, tp.1
                ),
            ));
        }
        // -1 means "no timestamp" and is never out of range.
        if create_time
            && r.timestamp != -1
            && (now_ms.saturating_sub(r.timestamp) > before
                || r.timestamp.saturating_sub(now_ms) > after)
        {
            bad_timestamp = true;
            errors.push((
                r.index,
                format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp \
                     should be within [{}, {}]",
                    r.timestamp,
                    r.index,
                    now_ms.saturating_sub(before),
                    now_ms.saturating_add(after)
                ),
            ));
        }
    })?;
    if errors.is_empty() {
        return Ok(());
    }
    let (kind, message) = if bad_timestamp {
        (
            RejectKind::InvalidTimestamp,
            "One or more records have been rejected due to invalid timestamp".to_string(),
        )
    } else {
        let shown: Vec<String> = errors
            .iter()
            .take(3)
            .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
            .collect();
        (
            RejectKind::InvalidRecord,
            format!(
                "One or more records have been rejected due to {} record errors in total, and \
                 only showing the first three errors at most: [{}]",
                errors.len(),
                shown.join(", ")
            ),
        )
    };
    Err(LogError::RecordsRejected {
        kind,
        message,
        records: errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch_of, record};
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, &str)]) -> TopicConfig {
        let o: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicConfig::default().with_overrides(&o).unwrap()
    }

    #[test]
    fn untouched_batches_stay_borrowed() {
        let b = batch_of(0, &[record(None, Some(b"v"), 5)]);
        let p = prepare(&b, &TopicConfig::default(), 10, ("t", 0)).unwrap();
        assert!(matches!(p.batches[0].1, Cow::Borrowed(_)));
        assert_eq!((p.records, p.log_append_time_ms), (1, -1));
    }

    #[test]
    fn keyless_records_on_a_compacted_topic_are_named() {
        let b = batch_of(
            0,
            &[
                record(Some(b"k"), Some(b"v"), 5),
                record(None, Some(b"v"), 5),
                record(None, None, 5),
            ],
        );
        for policy in ["compact", "compact,delete"] {
            let err =
                prepare(&b, &config(&[("cleanup.policy", policy)]), 10, ("t", 0)).unwrap_err();
            let LogError::RecordsRejected {
                kind,
                message,
                records,
            } = err
            else {
                panic!("{err}")
            };
            assert_eq!(kind, RejectKind::InvalidRecord);
            assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
            assert!(message.contains("2 record errors"), "{message}");
            assert!(records[0].1.contains("without key in topic partition t-0"));
        }
        prepare(&b, &config(&[("cleanup.policy", "delete")]), 10, ("t", 0)).unwrap();
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused() {
        let now = 1_000_000;
        let c = config(&[
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "100"),
        ]);
        let ok = batch_of(
            0,
            &[
                record(None, Some(b"v"), now - 1000),
                record(None, Some(b"v"), now + 100),
            ],
        );
        prepare(&ok, &c, now, ("t", 0)).unwrap();
        for ts in [now - 1001, now + 101] {
            let b = batch_of(
                0,
                &[record(None, Some(b"v"), now), record(None, Some(b"v"), ts)],
            );
            let err = prepare(&b, &c, now, ("t", 0)).unwrap_err();
            let LogError::RecordsRejected { kind, records, .. } = err else {
                panic!("{err}")
            };
            assert_eq!(kind, RejectKind::InvalidTimestamp);
            assert_eq!(records[0].0, 1);
        }
        // LogAppendTime topics do not check what the producer sent.
        let c = config(&[
            ("message.timestamp.before.max.ms", "1"),
            ("message.timestamp.type", "LogAppendTime"),
        ]);
        let b = batch_of(0, &[record(None, Some(b"v"), 5)]);
        let p = prepare(&b, &c, now, ("t", 0)).unwrap();
        let h = p.batches[0].0;
        assert!(h.is_log_append_time());
        assert_eq!((h.max_timestamp, p.log_append_time_ms), (now, now));
        batch::validate(&p.batches[0].1).unwrap();
    }

    #[test]
    fn compression_type_recompresses_only_when_the_codec_differs() {
        let recs: Vec<_> = (0..20)
            .map(|i| record(Some(b"k"), Some(b"some value"), i))
            .collect();
        let plain = batch_of(0, &recs);
        let zstd = prepare(
            &plain,
            &config(&[("compression.type", "zstd")]),
            0,
            ("t", 0),
        )
        .unwrap();
        let (h, b) = &zstd.batches[0];
        assert_eq!(h.compression(), 4);
        assert!(b.len() < plain.len());
        let back = prepare(
            b,
            &config(&[("compression.type", "uncompressed")]),
            0,
            ("t", 0),
        )
        .unwrap();
        assert_eq!(back.batches[0].0.compression(), 0);
        assert_eq!(
            &back.batches[0].1[crate::batch::HEADER_LEN..],
            &plain[crate::batch::HEADER_LEN..]
        );
        let same = prepare(b, &config(&[("compression.type", "zstd")]), 0, ("t", 0)).unwrap();
        assert!(matches!(same.batches[0].1, Cow::Borrowed(_)));
        let kept = prepare(b, &TopicConfig::default(), 0, ("t", 0)).unwrap();
        assert!(matches!(kept.batches[0].1, Cow::Borrowed(_)));
        // Too large once recompressed (uncompressed) is refused by size.
        let small = config(&[
            ("compression.type", "uncompressed"),
            ("max.message.bytes", &(b.len() + 1).to_string()),
        ]);
        assert!(matches!(
            prepare(b, &small, 0, ("t", 0)),
            Err(LogError::MessageTooLarge { .. })
        ));
    }
}
