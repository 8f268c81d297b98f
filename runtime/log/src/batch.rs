//! The Kafka v2 record batch, as stored on disk and sent on the wire.
//!
//! The log never re-encodes what a producer sent: it reads the 61-byte batch header, checks the
//! CRC-32C, and rewrites only the base offset (which the CRC does not cover). Record-level
//! decoding (for compaction and timestamp lookups) goes through `kafka-protocol`, which also
//! handles compressed batches.
//!
//! Layout of the header (big-endian):
//!
//! ```text
//! 0  base offset        i64   8  batch length  i32   12 partition leader epoch i32
//! 16 magic (2)          i8   17  crc (u32, CRC-32C of bytes 21..end)
//! 21 attributes         i16  23  last offset delta i32  27 first timestamp i64
//! 35 max timestamp      i64  43  producer id i64   51 producer epoch i16
//! 53 base sequence      i32  57  record count i32  61 records...
//! ```

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::LogError;

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

/// The decoded fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length` bytes.
    pub batch_length: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Returns `None` if fewer than
    /// [`HEADER_LEN`] bytes are present. Does not check the CRC.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            first_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Total bytes of this batch, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the timestamps are the broker's append time (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks that `batch` is exactly one whole, well-formed v2 batch with a correct CRC.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, LogError> {
    let h = BatchHeader::parse(batch).ok_or_else(|| {
        LogError::CorruptBatch(format!(
            "batch of {} bytes is shorter than its header",
            batch.len()
        ))
    })?;
    if h.magic != 2 {
        return Err(LogError::UnsupportedMagic(h.magic));
    }
    if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || h.total_len() != batch.len() {
        return Err(LogError::CorruptBatch(format!(
            "batch length field {} does not match the {} bytes received",
            h.batch_length,
            batch.len()
        )));
    }
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    if crc != h.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC-32C mismatch: header {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    if h.record_count < 1 || h.last_offset_delta < 0 || h.last_offset_delta < h.record_count - 1 {
        return Err(LogError::InvalidRecord(format!(
            "record count {} with last offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    Ok(h)
}

/// A copy of `batch` whose records section is `section`, compressed with codec id `codec`: the
/// header is kept (offsets, timestamps, producer id, epoch and sequence), with the codec bits,
/// the batch length and the CRC updated.
pub fn with_records_section(
    batch: &[u8],
    header: &BatchHeader,
    codec: i16,
    section: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(section);
    let attributes = (header.attributes & !0x07) | (codec & 0x07);
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    refresh_crc(&mut out);
    out
}

/// Marks a batch as LogAppendTime stamped at `now_ms`: the timestamp type bit is set and the max
/// timestamp, which consumers then give every record, becomes `now_ms`.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, 21) | 0x08;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    refresh_crc(batch);
}

fn refresh_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Splits a buffer holding zero or more concatenated batches into whole batches, validating
/// each one. A trailing partial batch is an error (producers never send one).
pub fn split_validated(buf: &[u8]) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, LogError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(LogError::CorruptBatch(
                "trailing bytes after the last batch".into(),
            ));
        }
        let len = LOG_OVERHEAD + be_i32(rest, 8).max(0) as usize;
        if len > rest.len() {
            return Err(LogError::CorruptBatch(format!(
                "batch claims {len} bytes but only {} remain",
                rest.len()
            )));
        }
        let h = validate(&rest[..len])?;
        out.push((h, pos..pos + len));
        pos += len;
    }
    Ok(out)
}

/// Walks `buf` and returns the length of the longest prefix made of whole batches.
/// With `check_crc`, a batch whose CRC fails also ends the prefix.
pub fn whole_prefix(buf: &[u8], check_crc: bool) -> usize {
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&buf[pos..]) {
        let len = h.total_len();
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || pos + len > buf.len() {
            break;
        }
        if check_crc && validate(&buf[pos..pos + len]).is_err() {
            break;
        }
        pos += len;
    }
    pos
}

/// Decodes every record of one batch (decompressing if needed).
/// In a LogAppendTime batch every record's timestamp is the batch's max timestamp (the append
/// time), as consumers read it.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, LogError> {
    let mut b = Bytes::copy_from_slice(batch);
    let mut records = RecordBatchDecoder::decode(&mut b)
        .map(|set| set.records)
        .map_err(|e| LogError::CorruptBatch(format!("cannot decode records: {e}")))?;
    if let Some(h) = BatchHeader::parse(batch).filter(BatchHeader::is_log_append_time) {
        for r in &mut records {
            r.timestamp = h.max_timestamp;
        }
    }
    Ok(records)
}

/// Encodes records (which keep their offsets) into v2 batches with the given compression
/// codec id. Used by compaction and by tests.
pub fn encode_records(records: &[Record], compression: i16) -> Result<Bytes, LogError> {
    use kafka_protocol::records::Compression;
    let compression = match compression {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| LogError::CorruptBatch(format!("cannot encode records: {e}")))?;
    Ok(buf.freeze())
}

/// A record with the given key, value and timestamp (no headers), for [`build`].
pub fn new_record(key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: Default::default(),
    }
}

/// One uncompressed batch of `records` (offsets from 0; the log assigns the real ones).
pub fn build(records: &[Record]) -> Bytes {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r.offset = i as i64;
            r.sequence = -1 + i as i32;
            r
        })
        .collect();
    // Encoding owned, well-formed records into memory cannot fail.
    encode_records(&recs, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch_of, record};
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_crc() {
        let b = batch_of(7, &[record(Some(b"k"), Some(b"v"), 1000)]);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 7);
        assert_eq!(h.record_count, 1);
        assert_eq!(h.last_offset(), 7);
        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate(&bad), Err(LogError::CorruptBatch(_))));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            recs in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                 0i64..1_000_000,
                 proptest::collection::vec(("[a-z]{1,5}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3)),
                1..20),
            base in 0i64..1_000_000_000,
            codec in 0i16..5,
        ) {
            let records: Vec<Record> = recs.iter().enumerate().map(|(i, (k, v, ts, hs))| {
                let mut r = record(k.as_deref(), v.as_deref(), 1_700_000_000_000 + ts);
                r.offset = base + i as i64;
                r.sequence = i as i32 - 1;
                for (hk, hv) in hs {
                    r.headers.insert(hk.clone().into(), Some(Bytes::from(hv.clone())));
                }
                r
            }).collect();
            let encoded = encode_records(&records, codec).unwrap();
            let h = validate(&encoded).unwrap();
            prop_assert_eq!(h.base_offset, base);
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!(h.compression(), codec);
            let decoded = decode_records(&encoded).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (a, b) in decoded.iter().zip(records.iter()) {
                prop_assert_eq!(a.offset, b.offset);
                prop_assert_eq!(&a.key, &b.key);
                prop_assert_eq!(&a.value, &b.value);
                prop_assert_eq!(a.timestamp, b.timestamp);
                prop_assert_eq!(&a.headers, &b.headers);
            }
        }

        #[test]
        fn whole_prefix_never_includes_a_torn_batch(cut in 0usize..400) {
            let mut buf = Vec::new();
            for i in 0..4 {
                buf.extend_from_slice(&batch_of(i * 3, &[
                    record(Some(b"a"), Some(b"hello"), 1),
                    record(None, Some(b"world"), 2),
                    record(Some(b"b"), None, 3),
                ]));
            }
            let cut = cut.min(buf.len());
            let prefix = whole_prefix(&buf[..cut], true);
            prop_assert!(prefix <= cut);
            prop_assert!(split_validated(&buf[..prefix]).is_ok());
        }
    }
}
