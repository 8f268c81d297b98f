//! Records straight from and into Kafka v2 batch bytes, for readers and writers in the same
//! process (the Connect runtime): [`for_each_record`] lends each stored record's key, value and
//! headers as slices of the (decompressed) batch, and [`BatchEncoder`] writes records into one
//! uncompressed batch. Neither builds a `Record` per record, as `decode_records` and
//! `encode_records` (kafka-protocol's codec) do.

use bytes::Bytes;

use crate::LogError;
use crate::batch::{BatchHeader, HEADER_LEN, split_validated};
use crate::codec::{Cursor, records_section};

/// One stored record, borrowed from its batch.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: i64,
}

impl<'a> RawRecord<'a> {
    /// The record's headers: (name, value), in stored order (duplicates kept).
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let mut c = Cursor {
            buf: self.headers,
            pos: 0,
        };
        let n = self.header_count.max(0);
        (0..n).map_while(move |_| {
            let name = c.bytes().ok()??;
            let value = c.bytes().ok()?;
            Some((name, value))
        })
    }
}

/// Calls `f` for every record at or after offset `from` in `batches` (whole v2 batches, any
/// codec; control batches skipped). Returns the last offset the batches cover, records skipped
/// or not, so a reader can move past them.
pub fn for_each_record(
    batches: &[u8],
    from: i64,
    mut f: impl FnMut(RawRecord<'_>),
) -> Result<Option<i64>, LogError> {
    let mut last = None;
    for (h, range) in split_validated(batches)? {
        last = last.max(Some(h.last_offset()));
        if h.is_control() || h.last_offset() < from {
            continue;
        }
        let batch = &batches[range];
        let section = records_section(&h, batch)?;
        walk(&h, &section, from, &mut f)?;
    }
    Ok(last)
}

fn walk(
    h: &BatchHeader,
    section: &[u8],
    from: i64,
    f: &mut impl FnMut(RawRecord<'_>),
) -> Result<(), LogError> {
    let mut c = Cursor {
        buf: section,
        pos: 0,
    };
    let append_time = h.is_log_append_time();
    for _ in 0..h.record_count {
        let len = c.varlong()?;
        let start = c.pos;
        c.skip(1)?; // attributes
        let ts_delta = c.varlong()?;
        let offset_delta = c.varlong()?;
        let key = c.bytes()?;
        let value = c.bytes()?;
        let header_count = c.varlong()?;
        let hstart = c.pos;
        for _ in 0..header_count.max(0) {
            c.bytes()?;
            c.bytes()?;
        }
        let headers = &section[hstart..c.pos];
        if (c.pos - start) as i64 != len {
            return Err(LogError::CorruptBatch(format!(
                "a record is {} bytes but says {len}",
                c.pos - start
            )));
        }
        let offset = h.base_offset + offset_delta;
        if offset < from {
            continue;
        }
        f(RawRecord {
            offset,
            timestamp: if append_time {
                h.max_timestamp
            } else {
                h.first_timestamp.wrapping_add(ts_delta)
            },
            key,
            value,
            headers,
            header_count,
        });
    }
    Ok(())
}

/// Writes records into one uncompressed v2 batch (offsets from 0: the log assigns them).
#[derive(Debug, Default)]
pub struct BatchEncoder {
    /// The batch header's room (filled by `finish`), then the records.
    records: Vec<u8>,
    count: i32,
    first_ts: i64,
    max_ts: i64,
}

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn field_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint(out, -1),
        Some(b) => {
            varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

impl BatchEncoder {
    pub fn new() -> BatchEncoder {
        BatchEncoder::default()
    }

    /// An encoder with room for about `bytes` of records.
    pub fn with_capacity(bytes: usize) -> BatchEncoder {
        BatchEncoder {
            records: Vec::with_capacity(HEADER_LEN + bytes),
            ..BatchEncoder::default()
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of records encoded so far (the batch is this plus its header).
    pub fn byte_len(&self) -> usize {
        self.records.len()
    }

    /// Appends a record.
    pub fn push<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    ) {
        if self.count == 0 {
            self.first_ts = timestamp;
            self.max_ts = timestamp;
            if self.records.is_empty() {
                self.records.resize(HEADER_LEN, 0);
            }
        }
        self.max_ts = self.max_ts.max(timestamp);
        let ts_delta = timestamp - self.first_ts;
        let offset_delta = i64::from(self.count);
        let mut header_count = 0i64;
        let mut hlen = 0usize;
        for (n, v) in headers.clone() {
            header_count += 1;
            hlen += field_len(Some(n)) + field_len(v);
        }
        let body = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + field_len(key)
            + field_len(value)
            + varint_len(header_count)
            + hlen;
        let out = &mut self.records;
        out.reserve(body + 5);
        varint(out, body as i64);
        out.push(0); // attributes
        varint(out, ts_delta);
        varint(out, offset_delta);
        field(out, key);
        field(out, value);
        varint(out, header_count);
        for (n, v) in headers {
            field(out, Some(n));
            field(out, v);
        }
        self.count += 1;
    }

    /// The batch.
    /// The batch (written in place: the records are not copied again).
    pub fn finish(self) -> Bytes {
        let mut b = self.records;
        if b.is_empty() {
            b.resize(HEADER_LEN, 0);
        }
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(&0i64.to_be_bytes()); // base offset
        let length = (b.len() - 12) as i32;
        h.extend_from_slice(&length.to_be_bytes());
        h.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        h.push(2); // magic
        h.extend_from_slice(&[0; 4]); // crc, below
        h.extend_from_slice(&0i16.to_be_bytes()); // attributes
        h.extend_from_slice(&(self.count - 1).max(0).to_be_bytes()); // last offset delta
        h.extend_from_slice(&self.first_ts.to_be_bytes());
        h.extend_from_slice(&self.max_ts.to_be_bytes());
        h.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        h.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        h.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        h.extend_from_slice(&self.count.to_be_bytes());
        debug_assert_eq!(h.len(), HEADER_LEN);
        b[..HEADER_LEN].copy_from_slice(&h);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{decode_records, encode_records, validate};

    #[test]
    fn encoder_matches_the_decoder_and_records_come_back_borrowed() {
        let mut e = BatchEncoder::new();
        for i in 0..300i64 {
            let key = format!("k{i}");
            let value = "v".repeat(i as usize % 200);
            let hv = i.to_string();
            let headers: Vec<(&[u8], Option<&[u8]>)> = if i % 3 == 0 {
                vec![(b"a", Some(hv.as_bytes())), (b"a", None)]
            } else {
                Vec::new()
            };
            e.push(
                1_700_000_000_000 + i * 7,
                (i % 5 != 0).then_some(key.as_bytes()),
                (i % 7 != 0).then_some(value.as_bytes()),
                headers.iter().copied(),
            );
        }
        let batch = e.finish();
        validate(&batch).unwrap();
        let decoded = decode_records(&batch).unwrap();
        assert_eq!(decoded.len(), 300);
        assert_eq!(decoded[6].key.as_deref(), Some(&b"k6"[..]));
        assert_eq!(decoded[7].value, None);
        assert_eq!(decoded[9].timestamp, 1_700_000_000_063);
        // Every codec, read back raw from offset 100.
        let recs: Vec<_> = decoded
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r = r.clone();
                r.offset = 1000 + i as i64;
                r
            })
            .collect();
        for codec in 0..=4 {
            let mut stored = encode_records(&recs, codec).unwrap().to_vec();
            stored.extend_from_slice(&encode_records(&recs[..10], codec).unwrap());
            let mut seen = Vec::new();
            let last = for_each_record(&stored, 1100, |r| {
                seen.push((r.offset, r.key.map(<[u8]>::to_vec), r.headers().count()))
            })
            .unwrap();
            assert_eq!(last, Some(1299));
            assert_eq!(seen.len(), 200, "codec {codec}");
            // kafka-protocol's Record keeps one header per name.
            assert_eq!(seen[2], (1102, Some(b"k102".to_vec()), 1));
        }
        // Our own batch keeps duplicate header names, in order.
        let mut third = Vec::new();
        for_each_record(&batch, 3, |r| {
            if r.offset == 3 {
                third = r
                    .headers()
                    .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect();
            }
        })
        .unwrap();
        assert_eq!(
            third,
            vec![(b"a".to_vec(), Some(b"3".to_vec())), (b"a".to_vec(), None)]
        );
    }
}
