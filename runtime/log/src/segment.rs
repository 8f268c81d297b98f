//! One segment: a `.log` file of whole record batches plus its sparse offset and time indexes.
//!
//! The indexes live in memory while the segment is open and are written to `.index` and
//! `.timeindex` when the segment rolls, when the log closes cleanly, and after compaction. A
//! segment opened after a crash is scanned batch by batch (CRC checked), cut at the first batch
//! that is short or corrupt, and its indexes are rebuilt from the scan.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, HEADER_LEN};

/// Offset index entry: (offset relative to the segment base, byte position of that batch).
type IndexEntry = (u32, u32);
/// Time index entry: (largest timestamp up to and including a batch, that batch's relative offset).
type TimeEntry = (i64, u32);

/// File name stem for a segment: the base offset, zero padded as Kafka does.
pub fn stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub(crate) fn path_with(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{}.{ext}", stem(base_offset)))
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    pub file: Arc<File>,
    /// Bytes of whole batches in the file; readers never look past it.
    pub size: u64,
    /// One past the last offset in the segment (`base_offset` when empty).
    pub next_offset: i64,
    /// Largest record timestamp seen, -1 when empty.
    pub max_timestamp: i64,
    /// Wall-clock time of the first append (or file creation), for `segment.ms`.
    pub created_ms: i64,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index: u64,
    /// Rewritten by compaction, so offsets may have holes.
    compacted: bool,
    /// Bytes allocated on disk ahead of `size` (preallocation); the file is this long.
    allocated: u64,
    /// Preallocation failed once (no space, or the filesystem cannot): do not try again.
    no_prealloc: bool,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Reads whole batches from `file` between `from` and `to`, calling `f(header, position, bytes)`.
/// Stops early (returning the position reached) at a short batch or, with `check_crc`, at a
/// batch that fails validation. Reads in large chunks, so it is cheap on small batches.
pub(crate) fn scan(
    file: &File,
    from: u64,
    to: u64,
    check_crc: bool,
    mut f: impl FnMut(&BatchHeader, u64, &[u8]),
) -> io::Result<u64> {
    const CHUNK: usize = 1 << 20;
    let mut pos = from;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = from;
    loop {
        let off = (pos - buf_start) as usize;
        let avail = buf.len() - off;
        let need = match BatchHeader::parse(&buf[off..]) {
            Some(h) if h.batch_length >= (HEADER_LEN - batch::LOG_OVERHEAD) as i32 => h.total_len(),
            Some(_) => return Ok(pos),
            None => HEADER_LEN,
        };
        if need > avail {
            if pos >= to {
                return Ok(pos);
            }
            // Refill from `pos`, at least `need` bytes.
            let want = need.max(CHUNK).min((to - pos) as usize);
            if want < need {
                return Ok(pos);
            }
            buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                let n = file.read_at(&mut buf[got..], pos + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            buf_start = pos;
            if got < need {
                return Ok(pos);
            }
            continue;
        }
        let bytes = &buf[off..off + need];
        let header = if check_crc {
            match batch::validate(bytes) {
                Ok(h) => h,
                Err(_) => return Ok(pos),
            }
        } else {
            match BatchHeader::parse(bytes) {
                Some(h) => h,
                None => return Ok(pos),
            }
        };
        f(&header, pos, bytes);
        pos += need as u64;
    }
}

impl Segment {
    /// Creates a new, empty segment file.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let file = open_rw(&path_with(dir, base_offset, "log"))?;
        file.set_len(0)?;
        Ok(Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            compacted: false,
            allocated: 0,
            no_prealloc: false,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is CRC-checked and the file is cut
    /// at the first bad one; otherwise the persisted indexes are used when they look sane.
    /// Returns the segment and the number of bytes cut off.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        compacted: bool,
        index_interval: u64,
        now_ms: i64,
    ) -> io::Result<(Segment, u64)> {
        let path = path_with(dir, base_offset, "log");
        let file = open_rw(&path)?;
        let file_len = file.metadata()?.len();
        let created_ms = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(now_ms);
        let mut seg = Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            compacted,
            allocated: file_len,
            no_prealloc: false,
        };
        if !recover && seg.load_indexes(file_len)? {
            // Walk the tail after the last index entry to learn the end offset and max timestamp.
            let from = seg.index.last().map(|e| u64::from(e.1)).unwrap_or(0);
            seg.size = from;
            let mut tail = Vec::new();
            let end = scan(&seg.file, from, file_len, false, |h, pos, _| {
                tail.push((*h, pos))
            })?;
            if end == file_len {
                for (h, _) in &tail {
                    seg.next_offset = h.last_offset() + 1;
                    seg.max_timestamp = seg.max_timestamp.max(h.max_timestamp);
                }
                seg.size = end;
                if let Some(t) = seg.time_index.last() {
                    seg.max_timestamp = seg.max_timestamp.max(t.0);
                }
                return Ok((seg, 0));
            }
            tracing::warn!(segment = %path.display(), "index disagrees with the log; rebuilding");
        }
        seg.rebuild(file_len, recover, index_interval)?;
        let cut = file_len - seg.size;
        seg.allocated = seg.size;
        if cut > 0 {
            if all_zero(&seg.file, seg.size, file_len)? {
                tracing::info!(segment = %path.display(), bytes = cut, valid_bytes = seg.size, "dropping preallocated space after the last batch");
            } else {
                tracing::warn!(segment = %path.display(), cut_bytes = cut, valid_bytes = seg.size, "truncating torn or corrupt tail");
            }
            seg.file.set_len(seg.size)?;
        }
        seg.persist_indexes()?;
        Ok((seg, cut))
    }

    fn rebuild(&mut self, file_len: u64, check_crc: bool, index_interval: u64) -> io::Result<()> {
        self.index.clear();
        self.time_index.clear();
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        let mut entries = Vec::new();
        let end = scan(&self.file, 0, file_len, check_crc, |h, pos, _| {
            entries.push((*h, pos))
        })?;
        for (h, pos) in entries {
            // After a crash (`check_crc`) offsets must be dense from the segment base: the base
            // offset is not covered by the CRC. A compacted segment only needs them to grow.
            let bad = if check_crc && !self.compacted {
                h.base_offset != self.next_offset
            } else {
                h.base_offset < self.next_offset
            };
            if bad {
                self.size = pos;
                return Ok(());
            }
            self.note_batch(&h, pos, index_interval);
        }
        self.size = end;
        Ok(())
    }

    /// Records a batch just written at `pos` in the in-memory indexes.
    /// The max timestamp of the first batch (Kafka's estimate of a segment's earliest data, for
    /// `max.compaction.lag.ms`), or `None` when the segment is empty.
    pub fn first_batch_timestamp(&self) -> io::Result<Option<i64>> {
        if self.size < HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut h, 0)?;
        Ok(BatchHeader::parse(&h).map(|b| b.max_timestamp))
    }

    /// Allocates the file ahead of writes so that `end` bytes fit, in steps of `chunk`: an
    /// append then writes only data, and an fdatasync needs no metadata write for the file's
    /// size or blocks (one disk write instead of two on ext4). The file is longer than `size`
    /// until [`Segment::trim`]; readers never look past `size`, and recovery cuts the zeros.
    pub fn reserve(&mut self, end: u64, chunk: u64) {
        if chunk == 0 || end <= self.allocated || self.no_prealloc {
            return;
        }
        let target = end.max(self.allocated + chunk);
        match rustix::fs::fallocate(
            &*self.file,
            rustix::fs::FallocateFlags::empty(),
            self.allocated,
            target - self.allocated,
        ) {
            Ok(()) => self.allocated = target,
            Err(e) => {
                tracing::debug!(segment = %self.log_path().display(), error = %e, "cannot preallocate; the file grows as it is written");
                self.no_prealloc = true;
            }
        }
    }

    /// Gives back what was allocated past the data (when the segment rolls or closes).
    pub fn trim(&mut self) -> io::Result<()> {
        if self.allocated > self.size {
            self.file.set_len(self.size)?;
        }
        self.allocated = self.size;
        Ok(())
    }

    /// Entries in the offset index (the time index has as many).
    pub fn index_entries(&self) -> usize {
        self.index.len()
    }

    fn note_batch(&mut self, h: &BatchHeader, pos: u64, index_interval: u64) {
        let len = h.total_len() as u64;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if self.index.is_empty() || self.bytes_since_index >= index_interval {
            let rel = (h.base_offset - self.base_offset) as u32;
            self.index.push((rel, pos as u32));
            self.time_index.push((self.max_timestamp, rel));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.next_offset = h.last_offset() + 1;
        self.size = pos + len;
    }

    fn load_indexes(&mut self, file_len: u64) -> io::Result<bool> {
        let read = |ext: &str| -> io::Result<Option<Vec<u8>>> {
            match std::fs::read(path_with(&self.dir, self.base_offset, ext)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        let (Some(ix), Some(tx)) = (read("index")?, read("timeindex")?) else {
            return Ok(false);
        };
        if ix.len() % 8 != 0 || tx.len() % 12 != 0 || ix.len() / 8 != tx.len() / 12 {
            return Ok(false);
        }
        let index: Vec<IndexEntry> = ix
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let time_index: Vec<TimeEntry> = tx
            .chunks_exact(12)
            .map(|c| {
                let mut t = [0u8; 8];
                t.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(t),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        let monotonic = index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let in_file = index.last().is_none_or(|e| u64::from(e.1) < file_len);
        if !monotonic || !in_file || (index.is_empty() && file_len > 0) {
            return Ok(false);
        }
        // Spot-check: every indexed position must hold a batch with that base offset.
        for &(rel, pos) in index.iter().rev().take(4) {
            let mut h = [0u8; HEADER_LEN];
            if self.file.read_exact_at(&mut h, u64::from(pos)).is_err() {
                return Ok(false);
            }
            match BatchHeader::parse(&h) {
                Some(b) if b.base_offset == self.base_offset + i64::from(rel) => {}
                _ => return Ok(false),
            }
        }
        self.index = index;
        self.time_index = time_index;
        Ok(true)
    }

    /// Writes the in-memory indexes to their files (replacing them).
    pub fn persist_indexes(&self) -> io::Result<()> {
        self.write_indexes_to("index", "timeindex")
    }

    pub fn write_indexes_to(&self, index_ext: &str, time_ext: &str) -> io::Result<()> {
        let mut ix = Vec::with_capacity(self.index.len() * 8);
        for (rel, pos) in &self.index {
            ix.extend_from_slice(&rel.to_be_bytes());
            ix.extend_from_slice(&pos.to_be_bytes());
        }
        let mut tx = Vec::with_capacity(self.time_index.len() * 12);
        for (ts, rel) in &self.time_index {
            tx.extend_from_slice(&ts.to_be_bytes());
            tx.extend_from_slice(&rel.to_be_bytes());
        }
        std::fs::write(path_with(&self.dir, self.base_offset, index_ext), ix)?;
        std::fs::write(path_with(&self.dir, self.base_offset, time_ext), tx)?;
        Ok(())
    }

    /// Fsyncs the log and index files.
    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_data()?;
        for ext in ["index", "timeindex"] {
            if let Ok(f) = File::open(path_with(&self.dir, self.base_offset, ext)) {
                f.sync_all()?;
            }
        }
        Ok(())
    }

    /// Appends already validated batches. `bases[i]` is the offset assigned to batch `i`.
    pub fn append(
        &mut self,
        batches: &[(BatchHeader, &[u8])],
        bases: &[i64],
        index_interval: u64,
    ) -> io::Result<()> {
        let base_bytes: Vec<[u8; 8]> = bases.iter().map(|b| b.to_be_bytes()).collect();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for (i, (_, bytes)) in batches.iter().enumerate() {
            slices.push(IoSlice::new(&base_bytes[i]));
            slices.push(IoSlice::new(&bytes[8..]));
        }
        let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
        let start = self.size;
        write_all_at(&self.file, &mut slices, start, total)?;
        let mut pos = start;
        for (i, (h, bytes)) in batches.iter().enumerate() {
            let mut h = *h;
            h.base_offset = bases[i];
            self.note_batch(&h, pos, index_interval);
            pos += bytes.len() as u64;
        }
        Ok(())
    }

    /// Byte position of the first batch whose last offset is >= `offset`, or `None`.
    pub fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).max(0) as u32;
        let i = self.index.partition_point(|e| e.0 <= rel);
        let mut pos = if i == 0 {
            0
        } else {
            u64::from(self.index[i - 1].1)
        };
        let mut h = [0u8; HEADER_LEN];
        while pos < self.size {
            self.file.read_exact_at(&mut h, pos)?;
            let Some(b) = BatchHeader::parse(&h) else {
                break;
            };
            if b.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += b.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting at `pos`: up to `max_bytes`, and with `min_one` always the
    /// first batch whole (so a consumer can make progress past a batch larger than its fetch
    /// size); without it, nothing when the first batch does not fit. Never reads more than
    /// `hard_limit` bytes.
    pub fn read_at(
        &self,
        pos: u64,
        max_bytes: usize,
        min_one: bool,
        hard_limit: usize,
    ) -> io::Result<Bytes> {
        if pos >= self.size {
            return Ok(Bytes::new());
        }
        let mut h = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut h, pos)?;
        let first = BatchHeader::parse(&h).map(|b| b.total_len()).unwrap_or(0);
        if !min_one && first > max_bytes {
            return Ok(Bytes::new());
        }
        let avail = ((self.size - pos) as usize).min(hard_limit);
        let want = max_bytes.max(first).min(avail);
        let mut buf = BytesMut::zeroed(want);
        self.file.read_exact_at(&mut buf, pos)?;
        let whole = batch::whole_prefix(&buf, false);
        buf.truncate(whole);
        Ok(buf.freeze())
    }

    /// The first record with timestamp >= `ts`: (offset, timestamp).
    pub fn find_timestamp(&self, ts: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let i = self.time_index.partition_point(|e| e.0 < ts);
        let start_pos = if i == 0 {
            0
        } else {
            let rel = self.time_index[i - 1].1;
            let j = self.index.partition_point(|e| e.0 <= rel);
            if j == 0 {
                0
            } else {
                u64::from(self.index[j - 1].1)
            }
        };
        let mut found = None;
        let mut err = None;
        scan(&self.file, start_pos, self.size, false, |h, _, bytes| {
            if found.is_some() || err.is_some() || h.max_timestamp < ts {
                return;
            }
            match batch::decode_records(bytes) {
                Ok(records) => {
                    found = records
                        .iter()
                        .find(|r| r.timestamp >= ts)
                        .map(|r| (r.offset, r.timestamp));
                }
                Err(e) => err = Some(e),
            }
        })?;
        if let Some(e) = err {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        }
        Ok(found)
    }

    /// The path of the `.log` file.
    pub fn log_path(&self) -> PathBuf {
        path_with(&self.dir, self.base_offset, "log")
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self) -> io::Result<()> {
        for ext in ["log", "index", "timeindex"] {
            match std::fs::remove_file(path_with(&self.dir, self.base_offset, ext)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether the bytes of `file` in `from..to` are all zero (preallocated, never written).
fn all_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Writes every slice at `pos`, looping over partial writes.
fn write_all_at(file: &File, slices: &mut [IoSlice<'_>], pos: u64, total: usize) -> io::Result<()> {
    // Positional vectored writes are not in std; the file is only ever appended to by its owner
    // (under the partition's write lock) and its cursor is kept at `pos`.
    let mut f: &File = file;
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(pos))?;
    let mut written = 0;
    let mut bufs: &mut [IoSlice<'_>] = slices;
    while written < total {
        let n = f.write_vectored(bufs)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "segment write returned 0",
            ));
        }
        written += n;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}
