//! Writing a batch.

use crate::view::field;
use crate::{
    Batch, BatchError, HEADER_SIZE, HEADER_STRIDE, MAGIC, NULL, RECORD_STRIDE, RecordRef, VERSION,
};

/// One record to write, from borrowed parts. `Default` is an empty record: no key, no value,
/// no headers, timestamp 0 (the time of the write), no topic, partition or offset.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordData<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub source_partition: Option<&'a [u8]>,
    pub source_offset: Option<&'a [u8]>,
}

/// Builds a batch: record entries, header entries and the data arena are collected apart and
/// written back to back by [`BatchBuilder::finish`].
#[derive(Debug, Default, Clone)]
pub struct BatchBuilder {
    entries: Vec<u8>,
    headers: Vec<u8>,
    data: Vec<u8>,
    count: usize,
    header_count: usize,
    /// The last topic written, so consecutive records of one topic share its bytes.
    last_topic: Option<(u32, u32)>,
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::default()
    }

    /// A builder with room for `records` records and `data` bytes of keys, values and headers.
    pub fn with_capacity(records: usize, data: usize) -> BatchBuilder {
        BatchBuilder {
            entries: Vec::with_capacity(records * RECORD_STRIDE),
            data: Vec::with_capacity(data),
            ..BatchBuilder::default()
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends bytes to the arena: (offset, length), or (0, NULL) for `None`.
    fn put(&mut self, b: Option<&[u8]>) -> (u32, u32) {
        match b {
            None => (0, NULL),
            Some(b) => {
                // Offsets past 4 GiB are caught by `finish`, which refuses such a batch.
                let off = self.data.len() as u32;
                self.data.extend_from_slice(b);
                (off, b.len() as u32)
            }
        }
    }

    fn put_topic(&mut self, topic: &str) -> (u32, u32) {
        if let Some((off, len)) = self.last_topic {
            let (o, l) = (off as usize, len as usize);
            if self.data.get(o..o + l) == Some(topic.as_bytes()) {
                return (off, len);
            }
        }
        let r = self.put(Some(topic.as_bytes()));
        self.last_topic = Some(r);
        r
    }

    fn put_header(&mut self, name: &str, value: Option<&[u8]>) {
        let n = self.put(Some(name.as_bytes()));
        let v = self.put(value);
        for x in [n.0, n.1, v.0, v.1] {
            self.headers.extend_from_slice(&x.to_le_bytes());
        }
        self.header_count += 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn put_entry(
        &mut self,
        timestamp: i64,
        key: (u32, u32),
        value: (u32, u32),
        headers: (usize, usize),
        topic: (u32, u32),
        partition: i32,
        offset: i64,
        source: [(u32, u32); 2],
    ) {
        let start = self.entries.len();
        self.entries.resize(start + RECORD_STRIDE, 0);
        let e = &mut self.entries[start..];
        let pair = |e: &mut [u8], at: usize, (a, b): (u32, u32)| {
            e[at..at + 4].copy_from_slice(&a.to_le_bytes());
            e[at + 4..at + 8].copy_from_slice(&b.to_le_bytes());
        };
        e[field::TIMESTAMP..field::TIMESTAMP + 8].copy_from_slice(&timestamp.to_le_bytes());
        pair(e, field::KEY, key);
        pair(e, field::VALUE, value);
        pair(e, field::HEADERS, (headers.0 as u32, headers.1 as u32));
        pair(e, field::TOPIC, topic);
        e[field::PARTITION..field::PARTITION + 4].copy_from_slice(&partition.to_le_bytes());
        e[field::OFFSET..field::OFFSET + 8].copy_from_slice(&offset.to_le_bytes());
        pair(e, field::SOURCE_PARTITION, source[0]);
        pair(e, field::SOURCE_OFFSET, source[1]);
        self.count += 1;
    }

    /// Appends a record from borrowed parts.
    pub fn push(&mut self, r: &RecordData<'_>) {
        let key = self.put(r.key);
        let value = self.put(r.value);
        let first = self.header_count;
        for (name, value) in r.headers {
            self.put_header(name, *value);
        }
        let topic = self.put_topic(r.topic);
        let source = [self.put(r.source_partition), self.put(r.source_offset)];
        self.put_entry(
            r.timestamp,
            key,
            value,
            (first, r.headers.len()),
            topic,
            r.partition.unwrap_or(-1),
            r.offset.unwrap_or(-1),
            source,
        );
    }

    /// Copies a record of another batch, byte range by byte range.
    pub fn push_ref(&mut self, r: &RecordRef<'_>) {
        self.push_ref_with_headers(r, &[]);
    }

    /// Copies a record of another batch and appends `extra` headers to its own.
    pub fn push_ref_with_headers(&mut self, r: &RecordRef<'_>, extra: &[(&str, Option<&[u8]>)]) {
        let key = self.put(r.key());
        let value = self.put(r.value());
        let first = self.header_count;
        let mut n = 0;
        for h in r.headers() {
            self.put_header(h.name, h.value);
            n += 1;
        }
        for (name, value) in extra {
            self.put_header(name, *value);
            n += 1;
        }
        let topic = self.put_topic(r.topic());
        let source = [self.put(r.source_partition()), self.put(r.source_offset())];
        self.put_entry(
            r.timestamp(),
            key,
            value,
            (first, n),
            topic,
            r.raw_partition(),
            r.raw_offset(),
            source,
        );
    }

    /// Copies a record of another batch with a new value.
    pub fn push_ref_with_value(&mut self, r: &RecordRef<'_>, value: Option<&[u8]>) {
        let key = self.put(r.key());
        let value = self.put(value);
        let first = self.header_count;
        let mut n = 0;
        for h in r.headers() {
            self.put_header(h.name, h.value);
            n += 1;
        }
        let topic = self.put_topic(r.topic());
        let source = [self.put(r.source_partition()), self.put(r.source_offset())];
        self.put_entry(
            r.timestamp(),
            key,
            value,
            (first, n),
            topic,
            r.raw_partition(),
            r.raw_offset(),
            source,
        );
    }

    /// The finished batch. Fails only when it would be 4 GiB or more.
    pub fn finish(self) -> Result<Vec<u8>, BatchError> {
        let total = HEADER_SIZE as u64
            + self.entries.len() as u64
            + self.headers.len() as u64
            + self.data.len() as u64;
        if total >= u32::MAX as u64 {
            return Err(BatchError(format!(
                "a batch of {total} bytes is over the 4 GiB a batch may hold"
            )));
        }
        let records_offset = HEADER_SIZE;
        let headers_offset = records_offset + self.entries.len();
        let data_offset = headers_offset + self.headers.len();
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
        out.extend_from_slice(&(self.count as u32).to_le_bytes());
        out.extend_from_slice(&(RECORD_STRIDE as u16).to_le_bytes());
        out.extend_from_slice(&(HEADER_STRIDE as u16).to_le_bytes());
        out.extend_from_slice(&(self.header_count as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [records_offset, headers_offset, data_offset, self.data.len()] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.entries);
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(&self.data);
        Ok(out)
    }
}

/// The records of `batch` at `indexes`, in that order (an index may repeat): what a
/// transform's `select` output means.
pub fn select(batch: &Batch<'_>, indexes: &[u32]) -> Result<Vec<u8>, BatchError> {
    let mut b = BatchBuilder::with_capacity(indexes.len(), batch.as_bytes().len());
    for &i in indexes {
        let r = batch.get(i as usize).ok_or_else(|| {
            BatchError(format!(
                "select names record {i}, but the batch has {}",
                batch.len()
            ))
        })?;
        b.push_ref(&r);
    }
    b.finish()
}
