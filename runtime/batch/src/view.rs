//! Reading a batch: validation once, then views that read fields in place.

use crate::{
    BatchError, HEADER_SIZE, HEADER_STRIDE, MAGIC, NULL, RECORD_STRIDE, VERSION, i64_at, u16_at,
    u32_at,
};

/// A validated batch over borrowed bytes. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    buf: &'a [u8],
    count: usize,
    header_count: usize,
    records_offset: usize,
    record_stride: usize,
    headers_offset: usize,
    header_stride: usize,
    data_offset: usize,
}

/// Record entry field offsets (version 1).
pub(crate) mod field {
    pub const TIMESTAMP: usize = 0;
    pub const KEY: usize = 8;
    pub const VALUE: usize = 16;
    pub const HEADERS: usize = 24;
    pub const TOPIC: usize = 32;
    pub const PARTITION: usize = 40;
    pub const RESERVED: usize = 44;
    pub const OFFSET: usize = 48;
    pub const SOURCE_PARTITION: usize = 56;
    pub const SOURCE_OFFSET: usize = 64;
}

fn bad<T>(what: String) -> Result<T, BatchError> {
    Err(BatchError(what))
}

impl<'a> Batch<'a> {
    /// Validates `buf` as a batch (every rule of `wit/BATCH.md`), or names the first bad field.
    /// After this, no accessor can read outside the buffer.
    pub fn parse(buf: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let batch = Batch::parse_trusted(buf)?;
        batch.check_entries(buf.len() - batch.data_offset)?;
        Ok(batch)
    }

    /// Checks the header and the section sizes only (constant time), for a batch from a
    /// trusted writer: a plugin reading what the host sent, the runtime reading what it built.
    /// A record whose ranges are wrong then reads as empty or null fields, never outside the
    /// buffer (every accessor is bounds-checked), but it is not reported.
    pub fn parse_trusted(buf: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        if buf.len() < HEADER_SIZE {
            return bad(format!(
                "batch of {} bytes is shorter than its {HEADER_SIZE}-byte header",
                buf.len()
            ));
        }
        if buf[..4] != MAGIC {
            return bad(format!(
                "magic is {:02x?}, not {:02x?} (\"WRB1\"): not a Weir batch",
                &buf[..4],
                MAGIC
            ));
        }
        let version = u16_at(buf, 4);
        if version != VERSION {
            return bad(format!(
                "batch layout version {version}; this reader knows version {VERSION}"
            ));
        }
        if u32::try_from(buf.len()).is_err() || buf.len() == u32::MAX as usize {
            return bad(format!("batch of {} bytes is 4 GiB or more", buf.len()));
        }
        let header_size = u16_at(buf, 6) as usize;
        let count = u32_at(buf, 8) as usize;
        let record_stride = u16_at(buf, 12) as usize;
        let header_stride = u16_at(buf, 14) as usize;
        let header_count = u32_at(buf, 16) as usize;
        let flags = u32_at(buf, 20);
        let (records_offset, headers_offset, data_offset, data_len) = (
            u32_at(buf, 24) as usize,
            u32_at(buf, 28) as usize,
            u32_at(buf, 32) as usize,
            u32_at(buf, 36) as usize,
        );
        if flags != 0 {
            return bad(format!("flags is {flags:#x}; version 1 defines none"));
        }
        for (name, value, min) in [
            ("header_size", header_size, HEADER_SIZE),
            ("record_stride", record_stride, RECORD_STRIDE),
            ("header_stride", header_stride, HEADER_STRIDE),
        ] {
            if value < min || value % 8 != 0 {
                return bad(format!(
                    "{name} is {value}; it must be a multiple of 8 and at least {min}"
                ));
            }
        }
        if header_size > buf.len() {
            return bad(format!(
                "header_size {header_size} is past the end of the {}-byte batch",
                buf.len()
            ));
        }
        // The sections are back to back, in order, and end at the end of the buffer. The
        // arithmetic is in u64: counts are u32, strides u16, so nothing overflows.
        let expect = |name: &str, got: usize, want: u64| -> Result<(), BatchError> {
            if got as u64 != want {
                return bad(format!(
                    "{name} is {got}; with the counts and strides given it must be {want}"
                ));
            }
            Ok(())
        };
        expect("records_offset", records_offset, header_size as u64)?;
        let want_headers = records_offset as u64 + count as u64 * record_stride as u64;
        expect("headers_offset", headers_offset, want_headers)?;
        let want_data = headers_offset as u64 + header_count as u64 * header_stride as u64;
        expect("data_offset", data_offset, want_data)?;
        expect(
            "data_len",
            data_len,
            (buf.len() as u64).saturating_sub(data_offset as u64),
        )?;
        if data_offset > buf.len() {
            return bad(format!(
                "the record and header entries ({data_offset} bytes with the header) do not fit in the {}-byte batch",
                buf.len()
            ));
        }
        Ok(Batch {
            buf,
            count,
            header_count,
            records_offset,
            record_stride,
            headers_offset,
            header_stride,
            data_offset,
        })
    }

    fn check_entries(&self, data_len: usize) -> Result<(), BatchError> {
        let arena = &self.buf[self.data_offset..];
        let range = |what: &dyn Fn() -> String, e: &[u8], at: usize, nullable: bool| {
            let (off, len) = (u32_at(e, at), u32_at(e, at + 4));
            if len == NULL {
                if !nullable {
                    return bad(format!("{} is null, which is not allowed", what()));
                }
                if off != 0 {
                    return bad(format!("{} is null but its offset is {off}, not 0", what()));
                }
                return Ok(None);
            }
            if off as u64 + len as u64 > data_len as u64 {
                return bad(format!(
                    "{} (offset {off}, length {len}) ends past the data arena ({data_len} bytes)",
                    what()
                ));
            }
            Ok(Some(&arena[off as usize..off as usize + len as usize]))
        };
        let utf8 = |what: &dyn Fn() -> String, bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(|_| ())
                .map_err(|e| BatchError(format!("{} is not UTF-8: {e}", what())))
        };
        for i in 0..self.count {
            let e = self.entry(i);
            let name = |f: &'static str| move || format!("record {i}: {f}");
            range(&name("key"), e, field::KEY, true)?;
            range(&name("value"), e, field::VALUE, true)?;
            let topic = range(&name("topic"), e, field::TOPIC, false)?.unwrap_or_default();
            utf8(&name("topic"), topic)?;
            range(&name("source_partition"), e, field::SOURCE_PARTITION, true)?;
            range(&name("source_offset"), e, field::SOURCE_OFFSET, true)?;
            let (first, n) = (
                u32_at(e, field::HEADERS) as u64,
                u32_at(e, field::HEADERS + 4) as u64,
            );
            if first + n > self.header_count as u64 {
                return bad(format!(
                    "record {i}: headers {first}..{} go past the {} header entries",
                    first + n,
                    self.header_count
                ));
            }
            let reserved = u32_at(e, field::RESERVED);
            if reserved != 0 {
                return bad(format!("record {i}: reserved field is {reserved}, not 0"));
            }
        }
        for h in 0..self.header_count {
            let e = self.header_entry(h);
            let name = |f: &'static str| move || format!("header entry {h}: {f}");
            let n = range(&name("name"), e, 0, false)?.unwrap_or_default();
            utf8(&name("name"), n)?;
            range(&name("value"), e, 8, true)?;
        }
        Ok(())
    }

    /// The record entry `i` (`i < count`, checked by callers).
    fn entry(&self, i: usize) -> &'a [u8] {
        let at = self.records_offset + i * self.record_stride;
        &self.buf[at..at + RECORD_STRIDE]
    }

    fn header_entry(&self, h: usize) -> &'a [u8] {
        let at = self.headers_offset + h * self.header_stride;
        &self.buf[at..at + HEADER_STRIDE]
    }

    /// The data arena slice at (offset, length) of an entry, or `None` for null. Bounds are
    /// checked here too, so a batch read with `parse_trusted` can never be read outside.
    fn slice(&self, e: &[u8], at: usize) -> Option<&'a [u8]> {
        let (off, len) = (u32_at(e, at) as usize, u32_at(e, at + 4));
        if len == NULL {
            return None;
        }
        let start = self.data_offset.checked_add(off)?;
        self.buf.get(start..start.checked_add(len as usize)?)
    }

    /// Size of the whole buffer in bytes.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Record `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<RecordRef<'a>> {
        (i < self.count).then(|| RecordRef {
            batch: *self,
            index: i,
            entry: self.entry(i),
        })
    }

    /// The last source offset of each source partition in the batch, in first-seen order
    /// (what a source's poll advanced to). Borrowed: no allocation per record.
    pub fn last_source_offsets(&self) -> Vec<(&'a [u8], &'a [u8])> {
        let mut last: Vec<(&'a [u8], &'a [u8])> = Vec::new();
        let mut at = 0; // where the previous record's partition is
        for r in self.iter() {
            if let (Some(p), Some(o)) = (r.source_partition(), r.source_offset()) {
                if last.get(at).is_some_and(|(q, _)| *q == p) {
                    last[at].1 = o;
                } else if let Some(i) = last.iter().position(|(q, _)| *q == p) {
                    last[i].1 = o;
                    at = i;
                } else {
                    at = last.len();
                    last.push((p, o));
                }
            }
        }
        last
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'a>> + 'a {
        let b = *self;
        (0..self.count).map(move |i| RecordRef {
            batch: b,
            index: i,
            entry: b.entry(i),
        })
    }

    /// The whole buffer.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// One record of a [`Batch`]: every accessor reads the buffer in place.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    batch: Batch<'a>,
    index: usize,
    entry: &'a [u8],
}

/// One header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: Option<&'a [u8]>,
}

/// A record's headers, in order.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    batch: Batch<'a>,
    next: usize,
    end: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.next >= self.end {
            return None;
        }
        let e = self.batch.header_entry(self.next);
        self.next += 1;
        // Validated by `parse`: the name is in the arena and UTF-8.
        let name = self
            .batch
            .slice(e, 0)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default();
        Some(Header {
            name,
            value: self.batch.slice(e, 8),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Headers<'_> {}

impl<'a> RecordRef<'a> {
    /// Position of the record in its batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Milliseconds since the Unix epoch; `<= 0`: the time of the write.
    pub fn timestamp(&self) -> i64 {
        i64_at(self.entry, field::TIMESTAMP)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.batch.slice(self.entry, field::KEY)
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.batch.slice(self.entry, field::VALUE)
    }

    pub fn headers(&self) -> Headers<'a> {
        let first = u32_at(self.entry, field::HEADERS) as usize;
        let n = u32_at(self.entry, field::HEADERS + 4) as usize;
        let end = first.saturating_add(n).min(self.batch.header_count);
        Headers {
            batch: self.batch,
            next: first.min(end),
            end,
        }
    }

    /// The value of the first header named `name` (`Some(None)` for a null value).
    pub fn header(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.headers().find(|h| h.name == name).map(|h| h.value)
    }

    /// Sources: the topic to write to (empty: the connector's). Sinks: the topic read from.
    pub fn topic(&self) -> &'a str {
        self.batch
            .slice(self.entry, field::TOPIC)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Sources: the partition to write to (`None`: by key). Sinks: the partition read from.
    pub fn partition(&self) -> Option<i32> {
        let p = u32_at(self.entry, field::PARTITION) as i32;
        (p >= 0).then_some(p)
    }

    /// Sinks: the record's offset in its partition.
    pub fn offset(&self) -> Option<i64> {
        let o = i64_at(self.entry, field::OFFSET);
        (o >= 0).then_some(o)
    }

    pub fn source_partition(&self) -> Option<&'a [u8]> {
        self.batch.slice(self.entry, field::SOURCE_PARTITION)
    }

    pub fn source_offset(&self) -> Option<&'a [u8]> {
        self.batch.slice(self.entry, field::SOURCE_OFFSET)
    }

    /// The raw partition field (-1 and below: none), for copying.
    pub(crate) fn raw_partition(&self) -> i32 {
        u32_at(self.entry, field::PARTITION) as i32
    }

    /// The raw offset field, for copying.
    pub(crate) fn raw_offset(&self) -> i64 {
        i64_at(self.entry, field::OFFSET)
    }
}
