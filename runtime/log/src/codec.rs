//! A batch's records section, below the record level: decompress it, recompress it with another
//! codec or level, and walk its records without decoding them into owned values.
//!
//! Appends use this where a topic's config asks for it (`compression.type`, a key or timestamp
//! check): working on the raw records keeps every byte a producer sent (duplicate header keys,
//! varint forms) and costs one pass, where decoding into `Record`s and encoding again would
//! allocate per record and fold duplicate headers.

use std::borrow::Cow;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Compressor, Decompressor};

use crate::LogError;
use crate::batch::{BatchHeader, HEADER_LEN};

fn corrupt(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::CorruptBatch(format!("{what}: {e}"))
}

/// The records section of `batch` (after the 61-byte header), decompressed if needed.
pub(crate) fn records_section<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<Cow<'a, [u8]>, LogError> {
    let raw = &batch[HEADER_LEN..];
    let out = |b: &mut Bytes| Ok(b.clone());
    let mut buf = raw;
    let plain = match header.compression() {
        0 => return Ok(Cow::Borrowed(raw)),
        1 => cmpr::Gzip::decompress(&mut buf, out),
        2 => cmpr::Snappy::decompress(&mut buf, out),
        3 => cmpr::Lz4::decompress(&mut buf, out),
        4 => cmpr::Zstd::decompress(&mut buf, out),
        c => {
            return Err(LogError::CorruptBatch(format!(
                "unknown compression codec {c}"
            )));
        }
    }
    .map_err(|e| corrupt("cannot decompress the records", e))?;
    Ok(Cow::Owned(plain.to_vec()))
}

/// Compresses a records section with codec id `codec` (1 gzip .. 4 zstd) at `level` (`None`:
/// the codec's default).
pub(crate) fn compress(codec: i16, level: Option<i32>, plain: &[u8]) -> Result<Vec<u8>, LogError> {
    let err = |e| corrupt("cannot compress the records", e);
    let mut out = Vec::with_capacity(plain.len() / 2 + 64);
    match codec {
        0 => out.extend_from_slice(plain),
        1 => {
            let level = level.map_or(flate2::Compression::default(), |l| {
                flate2::Compression::new(l as u32)
            });
            let mut e = flate2::write::GzEncoder::new(&mut out, level);
            e.write_all(plain).map_err(err)?;
            e.finish().map_err(err)?;
        }
        2 => {
            let mut buf = BytesMut::new();
            cmpr::Snappy::compress(&mut buf, |b: &mut BytesMut| {
                b.extend_from_slice(plain);
                Ok(())
            })
            .map_err(|e| corrupt("cannot compress the records", e))?;
            out = buf.to_vec();
        }
        3 => {
            // The frame settings Kafka's clients read: independent blocks.
            let mut e = lz4::EncoderBuilder::new()
                .level(level.unwrap_or(9).max(0) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(&mut out)
                .map_err(err)?;
            e.write_all(plain).map_err(err)?;
            e.finish().1.map_err(err)?;
        }
        4 => zstd::stream::copy_encode(plain, &mut out, level.unwrap_or(3)).map_err(err)?,
        c => {
            return Err(LogError::CorruptBatch(format!(
                "unknown compression codec {c}"
            )));
        }
    }
    Ok(out)
}

/// What a key or timestamp check needs of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView {
    /// Index of the record in its batch.
    pub index: i32,
    pub timestamp: i64,
    pub has_key: bool,
}

/// A cursor over the varints of a records section; every read is bounds-checked.
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    /// A length-prefixed field: `None` for length -1.
    pub(crate) fn bytes(&mut self) -> Result<Option<&'a [u8]>, LogError> {
        let len = self.varlong()?;
        if len < 0 {
            return Ok(None);
        }
        let start = self.pos;
        self.skip(len)?;
        Ok(Some(&self.buf[start..self.pos]))
    }

    pub(crate) fn varlong(&mut self) -> Result<i64, LogError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| LogError::CorruptBatch("record ends inside a varint".into()))?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // Zig-zag decoding.
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(LogError::CorruptBatch("varint longer than 10 bytes".into()))
    }

    pub(crate) fn skip(&mut self, n: i64) -> Result<(), LogError> {
        let n = usize::try_from(n).map_err(|_| corrupt("negative length", n))?;
        if n > self.buf.len() - self.pos {
            return Err(LogError::CorruptBatch(
                "a record field runs past the batch".into(),
            ));
        }
        self.pos += n;
        Ok(())
    }
}

/// Calls `f` for each of the `count` records in a records section, checking that every record
/// is exactly as long as its length prefix says and that nothing is left over.
pub(crate) fn for_each_record(
    header: &BatchHeader,
    section: &[u8],
    mut f: impl FnMut(RecordView),
) -> Result<(), LogError> {
    let mut c = Cursor {
        buf: section,
        pos: 0,
    };
    for index in 0..header.record_count {
        let len = c.varlong()?;
        let start = c.pos;
        c.skip(1)?; // attributes
        let ts_delta = c.varlong()?;
        let _offset_delta = c.varlong()?;
        let key_len = c.varlong()?;
        if key_len > 0 {
            c.skip(key_len)?;
        }
        let value_len = c.varlong()?;
        if value_len > 0 {
            c.skip(value_len)?;
        }
        let headers = c.varlong()?;
        for _ in 0..headers.max(0) {
            let k = c.varlong()?;
            c.skip(k.max(0))?;
            let v = c.varlong()?;
            if v > 0 {
                c.skip(v)?;
            }
        }
        if (c.pos - start) as i64 != len {
            return Err(LogError::CorruptBatch(format!(
                "record {index} is {} bytes but says {len}",
                c.pos - start
            )));
        }
        f(RecordView {
            index,
            timestamp: header.first_timestamp.wrapping_add(ts_delta),
            has_key: key_len >= 0,
        });
    }
    if c.pos != section.len() {
        return Err(LogError::CorruptBatch(format!(
            "{} bytes after the last of {} records",
            section.len() - c.pos,
            header.record_count
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, encode_records, validate};
    use crate::testing::record;

    #[test]
    fn every_codec_round_trips_the_records_section() {
        let mut recs: Vec<_> = (0..50)
            .map(|i| {
                let key = (i % 3 != 0).then(|| format!("k{i}"));
                record(
                    key.as_deref().map(str::as_bytes),
                    Some(b"value value value"),
                    1_000 + i,
                )
            })
            .collect();
        for (i, r) in recs.iter_mut().enumerate() {
            r.offset = i as i64;
            r.sequence = i as i32 - 1;
        }
        let plain = encode_records(&recs, 0).unwrap();
        let h = validate(&plain).unwrap();
        let section = records_section(&h, &plain).unwrap().into_owned();
        let mut seen = Vec::new();
        for_each_record(&h, &section, |r| seen.push(r)).unwrap();
        assert_eq!(seen.len(), 50);
        assert_eq!(
            seen[4],
            RecordView {
                index: 4,
                timestamp: 1_004,
                has_key: true
            }
        );
        assert!(!seen[3].has_key);
        for codec in 1..=4 {
            for level in [None, Some(1)] {
                let packed = compress(codec, level, &section).unwrap();
                let rebuilt = batch::with_records_section(&plain, &h, codec, &packed);
                let h2 = validate(&rebuilt).unwrap();
                assert_eq!(h2.compression(), codec);
                assert_eq!(records_section(&h2, &rebuilt).unwrap(), &section[..]);
                // kafka-protocol's decoder (another implementation) reads it back too.
                assert_eq!(batch::decode_records(&rebuilt).unwrap().len(), 50);
            }
        }
    }

    #[test]
    fn truncated_or_padded_sections_are_corrupt_not_panics() {
        let recs = vec![record(Some(b"k"), Some(b"v"), 5)];
        let b = encode_records(&recs, 0).unwrap();
        let h = validate(&b).unwrap();
        let section = &b[HEADER_LEN..];
        for cut in 0..section.len() {
            assert!(for_each_record(&h, &section[..cut], |_| {}).is_err());
        }
        let mut padded = section.to_vec();
        padded.push(0);
        assert!(for_each_record(&h, &padded, |_| {}).is_err());
    }
}
