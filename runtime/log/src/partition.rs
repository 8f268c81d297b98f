//! One partition: an ordered set of segments, the last one active.
//!
//! Appends take the write lock, assign offsets, write the batches and update the indexes; reads
//! take the read lock and read whole batches with positional reads, never past the size of what
//! was completely written. Durability waits (`sync_to`) run outside the partition lock, one at a
//! time: whoever fsyncs covers every append that arrived before it (group commit).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::batch::{self, BatchHeader};
use crate::producers::{ProducerStates, Verdict};
use crate::segment::{self, Segment};
use crate::{AppendInfo, LogError, PartitionOffsets, ReadResult, TopicConfig};

/// A closed segment as compaction sees it: base offset, file, size, max timestamp.
type ClosedSegment = (i64, Arc<File>, u64, i64);

#[derive(Debug)]
pub(crate) struct Partition {
    dir: PathBuf,
    inner: RwLock<Inner>,
    /// Held while fsyncing, so concurrent `sync_to` calls queue behind one fsync.
    sync_lock: Mutex<()>,
    /// Offset up to which data is known to be on stable storage.
    synced: AtomicI64,
}

#[derive(Debug)]
struct Inner {
    segments: BTreeMap<i64, Segment>,
    log_start: i64,
    unflushed_messages: u64,
    /// Files of rolled segments not yet fsynced (the active one is synced by `sync_to` too).
    rolled_unsynced: Vec<Arc<File>>,
    producers: ProducerStates,
}

impl Inner {
    fn active(&self) -> &Segment {
        // Invariant: a partition always has at least one segment.
        self.segments
            .values()
            .next_back()
            .expect("partition has an active segment")
    }
    fn next_offset(&self) -> i64 {
        self.active().next_offset
    }
}

fn lock_err<T>(_: T) -> LogError {
    LogError::Io(io::Error::other("partition lock poisoned"))
}

impl Partition {
    /// Opens (or creates) the partition in `dir`. `recover` runs the crash-recovery scan on the
    /// last segment.
    pub fn open(
        dir: &Path,
        recover: bool,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<Partition, LogError> {
        std::fs::create_dir_all(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cleaned") || name.ends_with(".deleted") {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".log")
                && let Ok(b) = stem.parse::<i64>()
            {
                bases.push(b);
            }
        }
        finish_interrupted_compaction(dir, &bases)?;
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let n = bases.len();
        let mut expected_next: Option<i64> = None;
        for (i, base) in bases.into_iter().enumerate() {
            let last = i + 1 == n;
            let (seg, _cut) = Segment::open(
                dir,
                base,
                recover && last,
                false,
                config.index_interval_bytes,
                now_ms,
            )?;
            if let Some(prev) = expected_next
                && base < prev
            {
                return Err(LogError::Corrupt(format!(
                    "segment {} starts at offset {base}, before the end {prev} of the previous one",
                    seg.log_path().display()
                )));
            }
            expected_next = Some(seg.next_offset);
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0, now_ms)?);
        }
        let first_base = segments.values().next().map(|s| s.base_offset).unwrap_or(0);
        let next_offset = segments
            .values()
            .next_back()
            .map(|s| s.next_offset)
            .unwrap_or(0);
        let checkpoint = read_log_start(dir)?.unwrap_or(first_base);
        let log_start = first_base.max(checkpoint).min(next_offset);
        let mut producers = ProducerStates::default();
        for seg in segments
            .values()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            segment::scan(&seg.file, 0, seg.size, false, |h, _, _| {
                producers.record(h, h.base_offset)
            })?;
        }
        let inner = Inner {
            segments,
            log_start,
            unflushed_messages: 0,
            rolled_unsynced: Vec::new(),
            producers,
        };
        let next = inner.next_offset();
        if recover {
            // What recovery kept may still sit only in the page cache: make it durable before
            // calling it synced.
            inner.active().file.sync_data()?;
        }
        Ok(Partition {
            dir: dir.to_path_buf(),
            inner: RwLock::new(inner),
            sync_lock: Mutex::new(()),
            synced: AtomicI64::new(next),
        })
    }

    /// Log start and end. With `durable_only`, the end is the fsynced offset (the high
    /// watermark when every produce waits for an fsync).
    pub fn offsets(&self, durable_only: bool) -> Result<PartitionOffsets, LogError> {
        let inner = self.inner.read().map_err(lock_err)?;
        Ok(PartitionOffsets {
            log_start: inner.log_start,
            log_end: self.visible_end(&inner, durable_only),
        })
    }

    /// Validates and appends the batches in `records`. Returns the offsets assigned.
    pub fn append(
        &self,
        records: &[u8],
        config: &TopicConfig,
        flush_messages: Option<u64>,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let batches = batch::split_validated(records)?;
        if batches.is_empty() {
            return Err(LogError::InvalidRecord(
                "no record batch in the request".into(),
            ));
        }
        let mut parts: Vec<(BatchHeader, &[u8])> = Vec::with_capacity(batches.len());
        let mut count = 0u64;
        for (h, range) in batches {
            if h.total_len() as u64 > config.max_message_bytes {
                return Err(LogError::MessageTooLarge {
                    size: h.total_len(),
                    max: config.max_message_bytes,
                });
            }
            if h.is_transactional() || h.is_control() {
                return Err(LogError::InvalidRecord(
                    "transactional batches are not supported".into(),
                ));
            }
            count += h.record_count as u64;
            parts.push((h, &records[range]));
        }
        let total: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();

        let mut inner = self.inner.write().map_err(lock_err)?;
        let active = inner.active();
        let too_big = active.size > 0 && active.size + total > config.segment_bytes;
        let too_old = active.size > 0 && now_ms - active.created_ms >= config.segment_ms;
        if too_big || too_old || active.size + total > u64::from(u32::MAX) {
            self.roll(&mut inner, now_ms)?;
        }
        if let [(h, _)] = parts.as_slice()
            && let Verdict::Duplicate {
                base_offset,
                last_offset,
            } = inner.producers.check(h)?
        {
            tracing::debug!(dir = %self.dir.display(), producer_id = h.producer_id, base_sequence = h.base_sequence, "duplicate batch from an idempotent producer; not appended");
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                log_start_offset: inner.log_start,
                needs_sync: false,
                duplicate: true,
            });
        }
        for (h, _) in &parts {
            if let Verdict::Duplicate { .. } = inner.producers.check(h)? {
                return Err(LogError::InvalidRecord(
                    "a duplicate batch in a multi-batch request".into(),
                ));
            }
        }
        let mut next = inner.next_offset();
        let base_offset = next;
        let mut bases = Vec::with_capacity(parts.len());
        for (h, _) in &parts {
            bases.push(next);
            next += i64::from(h.last_offset_delta) + 1;
        }
        let log_start = inner.log_start;
        let active = inner
            .segments
            .values_mut()
            .next_back()
            .expect("partition has an active segment");
        if active.size == 0 {
            active.created_ms = now_ms;
        }
        if let Err(e) = active.append(&parts, &bases, config.index_interval_bytes) {
            // Drop whatever part of the write landed; the next append overwrites from `size`.
            let _ = active.file.set_len(active.size);
            return Err(LogError::Io(e));
        }
        for ((h, _), base) in parts.iter().zip(&bases) {
            inner.producers.record(h, *base);
        }
        inner.unflushed_messages += count;
        let needs_sync = flush_messages.is_some_and(|n| inner.unflushed_messages >= n);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_start_offset: log_start,
            needs_sync,
            duplicate: false,
        })
    }

    fn roll(&self, inner: &mut Inner, now_ms: i64) -> Result<(), LogError> {
        let next = inner.next_offset();
        let active = inner.active();
        active.persist_indexes()?;
        inner.rolled_unsynced.push(active.file.clone());
        let seg = Segment::create(&self.dir, next, now_ms)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = next, "rolled segment");
        inner.segments.insert(next, seg);
        Ok(())
    }

    /// Blocks until every record before `up_to` is on stable storage. Concurrent callers share
    /// one fsync: the caller holding the lock syncs everything written so far.
    pub fn sync_to(&self, up_to: i64) -> Result<(), LogError> {
        if self.synced.load(Ordering::Acquire) >= up_to {
            return Ok(());
        }
        let _guard = self.sync_lock.lock().map_err(lock_err)?;
        if self.synced.load(Ordering::Acquire) >= up_to {
            return Ok(());
        }
        let (files, end) = {
            let mut inner = self.inner.write().map_err(lock_err)?;
            let mut files = std::mem::take(&mut inner.rolled_unsynced);
            files.push(inner.active().file.clone());
            inner.unflushed_messages = 0;
            (files, inner.next_offset())
        };
        for f in files {
            f.sync_data()?;
        }
        self.synced.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Fsyncs everything written so far.
    pub fn flush(&self) -> Result<(), LogError> {
        let end = self.offsets(false)?.log_end;
        self.sync_to(end)
    }

    fn visible_end(&self, inner: &Inner, durable_only: bool) -> i64 {
        let end = inner.next_offset();
        if durable_only {
            end.min(self.synced.load(Ordering::Acquire))
        } else {
            end
        }
    }

    /// Reads whole batches from `offset`, at most `max_bytes` (but at least one batch). With
    /// `durable_only`, nothing past the fsynced offset is returned.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        durable_only: bool,
    ) -> Result<ReadResult, LogError> {
        let inner = self.inner.read().map_err(lock_err)?;
        let log_end = self.visible_end(&inner, durable_only);
        if offset < inner.log_start || offset > inner.next_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: inner.log_start,
                log_end,
            });
        }
        let mut records = Bytes::new();
        if offset < log_end {
            let segs = inner
                .segments
                .range(..=offset)
                .next_back()
                .into_iter()
                .chain(inner.segments.range(offset + 1..));
            for (_, seg) in segs {
                if let Some(pos) = seg.position_of(offset)? {
                    // Stop before the first batch past the visible end. Batches never straddle
                    // it: appends and fsyncs both happen at batch boundaries.
                    let limit = match seg.position_of(log_end)? {
                        Some(end_pos) => (end_pos - pos) as usize,
                        None => usize::MAX,
                    };
                    if limit > 0 {
                        records = seg.read_at(pos, max_bytes.min(limit), limit)?;
                    }
                    break;
                }
            }
        }
        Ok(ReadResult {
            records,
            high_watermark: log_end,
            log_start_offset: inner.log_start,
        })
    }

    /// Moves the log start offset to `offset` (-1: the end), deleting segments wholly before it,
    /// and persists it. Returns the new log start offset.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let mut inner = self.inner.write().map_err(lock_err)?;
        let end = inner.next_offset();
        let target = if offset == -1 { end } else { offset };
        if target < 0 || target > end {
            return Err(LogError::OffsetOutOfRange {
                offset: target,
                log_start: inner.log_start,
                log_end: end,
            });
        }
        if target <= inner.log_start {
            return Ok(inner.log_start);
        }
        write_log_start(&self.dir, target)?;
        inner.log_start = target;
        let doomed: Vec<i64> = {
            let n = inner.segments.len();
            inner
                .segments
                .values()
                .take(n.saturating_sub(1))
                .filter(|s| s.next_offset <= target)
                .map(|s| s.base_offset)
                .collect()
        };
        for base in doomed {
            if let Some(seg) = inner.segments.remove(&base) {
                seg.delete_files()?;
            }
        }
        tracing::info!(dir = %self.dir.display(), log_start_offset = target, "records deleted");
        Ok(target)
    }

    /// Offset and timestamp of the first record with timestamp >= `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let inner = self.inner.read().map_err(lock_err)?;
        for seg in inner.segments.values() {
            if let Some(found) = seg.find_timestamp(ts)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let ts = {
            let inner = self.inner.read().map_err(lock_err)?;
            inner
                .segments
                .values()
                .map(|s| s.max_timestamp)
                .max()
                .unwrap_or(-1)
        };
        if ts < 0 {
            Ok(None)
        } else {
            self.offset_for_timestamp(ts)
        }
    }

    /// Deletes closed segments past `retention.ms` / `retention.bytes`. Returns segments removed.
    pub fn enforce_retention(&self, config: &TopicConfig, now_ms: i64) -> Result<usize, LogError> {
        if !config.cleanup_policy.delete {
            return Ok(0);
        }
        let mut inner = self.inner.write().map_err(lock_err)?;
        let mut total: i64 = inner.segments.values().map(|s| s.size as i64).sum();
        let mut doomed = Vec::new();
        let closed: Vec<(i64, u64, i64)> = {
            let n = inner.segments.len();
            inner
                .segments
                .values()
                .take(n.saturating_sub(1))
                .map(|s| (s.base_offset, s.size, s.max_timestamp))
                .collect()
        };
        for (base, size, max_ts) in closed {
            let by_time =
                config.retention_ms >= 0 && max_ts >= 0 && now_ms - max_ts > config.retention_ms;
            let by_size =
                config.retention_bytes >= 0 && total - size as i64 >= config.retention_bytes;
            let empty_old = size == 0;
            if by_time || by_size || empty_old {
                doomed.push(base);
                total -= size as i64;
            } else {
                break;
            }
        }
        for base in &doomed {
            if let Some(seg) = inner.segments.remove(base) {
                seg.delete_files()?;
            }
        }
        if !doomed.is_empty() {
            let first = inner
                .segments
                .values()
                .next()
                .map(|s| s.base_offset)
                .unwrap_or(0);
            if first > inner.log_start {
                write_log_start(&self.dir, first)?;
            }
            inner.log_start = inner.log_start.max(
                inner
                    .segments
                    .values()
                    .next()
                    .map(|s| s.base_offset)
                    .unwrap_or(0),
            );
            tracing::info!(dir = %self.dir.display(), segments = doomed.len(), log_start_offset = inner.log_start, "retention deleted segments");
        }
        Ok(doomed.len())
    }

    /// Compacts closed segments: keeps the newest record per key, drops tombstones older than
    /// `delete.retention.ms`. Returns the number of records removed.
    pub fn compact(&self, config: &TopicConfig, now_ms: i64) -> Result<usize, LogError> {
        if !config.cleanup_policy.compact {
            return Ok(0);
        }
        // Snapshot the closed segments eligible for cleaning and the newest offset per key
        // across the whole log (active segment included).
        let (closed, all): (Vec<ClosedSegment>, Vec<(Arc<File>, u64)>) = {
            let inner = self.inner.read().map_err(lock_err)?;
            let n = inner.segments.len();
            let closed = inner
                .segments
                .values()
                .take(n.saturating_sub(1))
                .take_while(|s| now_ms - s.max_timestamp >= config.min_compaction_lag_ms)
                .map(|s| (s.base_offset, s.file.clone(), s.size, s.max_timestamp))
                .collect();
            let all = inner
                .segments
                .values()
                .map(|s| (s.file.clone(), s.size))
                .collect();
            (closed, all)
        };
        if closed.is_empty() {
            return Ok(0);
        }
        let mut latest: std::collections::HashMap<Bytes, i64> = std::collections::HashMap::new();
        let mut decode_err = None;
        for (file, size) in &all {
            segment::scan(
                file,
                0,
                *size,
                false,
                |_, _, bytes| match batch::decode_records(bytes) {
                    Ok(records) => {
                        for r in records {
                            if let Some(k) = r.key {
                                latest.insert(k, r.offset);
                            }
                        }
                    }
                    Err(e) => decode_err = Some(e),
                },
            )?;
        }
        if let Some(e) = decode_err {
            return Err(e);
        }
        let mut removed = 0usize;
        for (base, file, size, _) in closed {
            removed += self.clean_segment(base, &file, size, &latest, config, now_ms)?;
        }
        Ok(removed)
    }

    fn clean_segment(
        &self,
        base: i64,
        file: &File,
        size: u64,
        latest: &std::collections::HashMap<Bytes, i64>,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<usize, LogError> {
        let mut out: Vec<u8> = Vec::with_capacity(size as usize);
        let mut removed = 0usize;
        let mut err = None;
        segment::scan(file, 0, size, false, |_, _, bytes| {
            if err.is_some() {
                return;
            }
            let records = match batch::decode_records(bytes) {
                Ok(r) => r,
                Err(e) => {
                    err = Some(e);
                    return;
                }
            };
            let n = records.len();
            let keep: Vec<_> = records
                .into_iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => {
                        let newest = latest.get(k).is_none_or(|&o| o == r.offset);
                        let expired_tombstone =
                            r.value.is_none() && now_ms - r.timestamp > config.delete_retention_ms;
                        newest && !expired_tombstone
                    }
                })
                .collect();
            removed += n - keep.len();
            if keep.len() == n {
                out.extend_from_slice(bytes);
            } else if !keep.is_empty() {
                let codec = BatchHeader::parse(bytes)
                    .map(|h| h.compression())
                    .unwrap_or(0);
                match batch::encode_records(&keep, codec) {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(e) => err = Some(e),
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if removed == 0 {
            return Ok(0);
        }
        // Write the cleaned segment beside the old one, then swap: the rename of the .log file
        // is the commit point (see `finish_interrupted_compaction`).
        let cleaned_log = self
            .dir
            .join(format!("{}.log.cleaned", segment::stem(base)));
        std::fs::write(&cleaned_log, &out)?;
        File::open(&cleaned_log)?.sync_all()?;
        let mut inner = self.inner.write().map_err(lock_err)?;
        if !inner.segments.contains_key(&base) {
            let _ = std::fs::remove_file(&cleaned_log);
            return Ok(0);
        }
        // Old indexes would point into the old file: remove them first, so that a crash right
        // after the rename finds no index and rebuilds it from the cleaned log.
        for ext in ["index", "timeindex"] {
            match std::fs::remove_file(segment::path_with(&self.dir, base, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        std::fs::rename(&cleaned_log, segment::path_with(&self.dir, base, "log"))?;
        let (seg, _) = Segment::open(
            &self.dir,
            base,
            true,
            true,
            config.index_interval_bytes,
            now_ms,
        )?;
        seg.persist_indexes()?;
        inner.segments.insert(base, seg);
        tracing::info!(dir = %self.dir.display(), base_offset = base, removed, "compacted segment");
        Ok(removed)
    }

    /// Writes indexes of every segment (on clean shutdown) and fsyncs.
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        let inner = self.inner.read().map_err(lock_err)?;
        for seg in inner.segments.values() {
            seg.persist_indexes()?;
            seg.sync_all()?;
        }
        Ok(())
    }

    /// Size in bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .read()
            .map(|i| i.segments.values().map(|s| s.size).sum())
            .unwrap_or(0)
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.inner.read().map(|i| i.segments.len()).unwrap_or(0)
    }
}

/// A compaction that was interrupted leaves `.cleaned` files. If the `.log.cleaned` is still
/// there, the swap never happened: drop the leftovers and keep the original segment.
fn finish_interrupted_compaction(dir: &Path, _bases: &[i64]) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".cleaned") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

const LOG_START_FILE: &str = "log-start-offset";

fn read_log_start(dir: &Path) -> Result<Option<i64>, LogError> {
    match std::fs::read_to_string(dir.join(LOG_START_FILE)) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Persists the log start offset (written beside the segments, replaced atomically).
fn write_log_start(dir: &Path, offset: i64) -> Result<(), LogError> {
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    std::fs::write(&tmp, offset.to_string())?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(LOG_START_FILE))?;
    Ok(())
}
