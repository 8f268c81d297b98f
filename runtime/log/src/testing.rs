//! Helpers for tests in this crate and the crates above it: build real v2 batches.

use bytes::Bytes;
use kafka_protocol::records::Record;

/// A record with the given key, value and timestamp (offset 0, no headers).
pub fn record(key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Record {
    crate::batch::new_record(key, value, timestamp)
}

/// One uncompressed batch holding `records` with offsets `base..`.
pub fn batch_of(base: i64, records: &[Record]) -> Bytes {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r.offset = base + i as i64;
            r.sequence = -1 + i as i32;
            r
        })
        .collect();
    crate::batch::encode_records(&recs, 0).expect("test batch encodes")
}
