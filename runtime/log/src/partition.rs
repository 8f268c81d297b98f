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
use crate::validate;
use crate::{AppendInfo, LogError, PartitionOffsets, ReadResult, TopicConfig};

/// A closed segment as compaction sees it: base offset, file, size, max timestamp.
type ClosedSegment = (i64, Arc<File>, u64, i64);
/// A segment's file and its size.
type SegmentFile = (Arc<File>, u64);

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
    /// When the oldest unflushed append happened (for `flush.ms`).
    unflushed_since_ms: i64,
    /// Files of rolled segments not yet fsynced (the active one is synced by `sync_to` too).
    rolled_unsynced: Vec<Arc<File>>,
    producers: ProducerStates,
    /// Where the last compaction pass left the log.
    cleaner: CleanerCheckpoint,
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
    fn active_mut(&mut self) -> &mut Segment {
        // Invariant: a partition always has at least one segment.
        self.segments
            .values_mut()
            .next_back()
            .expect("partition has an active segment")
    }
}

/// How far ahead of the data the active segment is allocated when the topic asks for
/// `preallocate` (Kafka allocates the whole segment at once; steps keep idle partitions small).
const PREALLOCATE_CHUNK: u64 = 8 << 20;

/// Bytes of one time index entry, the larger of the two index entries: `segment.index.bytes`
/// bounds it.
const TIME_INDEX_ENTRY: u64 = 12;

/// How old the active segment may get before it rolls: `segment.ms` less this segment's share
/// of `segment.jitter.ms` (spread by base offset, so partitions do not all roll at once).
fn roll_after_ms(seg: &Segment, config: &TopicConfig) -> i64 {
    let jitter = config.segment_jitter_ms.min(config.segment_ms);
    if jitter <= 0 {
        return config.segment_ms;
    }
    let spread = (seg.base_offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1;
    config.segment_ms - (spread % jitter as u64) as i64
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
            unflushed_since_ms: 0,
            rolled_unsynced: Vec::new(),
            producers,
            cleaner: CleanerCheckpoint::read(dir)?,
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

    /// Validates and appends the batches in `records` (checked and transformed by the topic's
    /// config first, see [`crate::validate`]). Returns the offsets assigned.
    pub fn append(
        &self,
        records: &[u8],
        config: &TopicConfig,
        now_ms: i64,
        tp: (&str, i32),
    ) -> Result<AppendInfo, LogError> {
        let prepared = validate::prepare(records, config, now_ms, tp)?;
        let parts = prepared.parts();
        let count = prepared.records;
        let total = prepared.bytes();

        let mut inner = self.inner.write().map_err(lock_err)?;
        let active = inner.active();
        let too_big = active.size > 0 && active.size + total > config.segment_bytes;
        let too_old =
            active.size > 0 && now_ms - active.created_ms >= roll_after_ms(active, config);
        let index_full = active.size > 0
            && (active.index_entries() as u64 + 1) * TIME_INDEX_ENTRY > config.segment_index_bytes;
        if too_big || too_old || index_full || active.size + total > u64::from(u32::MAX) {
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
                visible: true,
                duplicate: true,
                log_append_time_ms: prepared.log_append_time_ms,
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
        if config.preallocate {
            active.reserve(
                active.size + total,
                config.segment_bytes.min(PREALLOCATE_CHUNK),
            );
        }
        if let Err(e) = active.append(&parts, &bases, config.index_interval_bytes) {
            // Drop whatever part of the write landed; the next append overwrites from `size`.
            let _ = active.file.set_len(active.size);
            return Err(LogError::Io(e));
        }
        for ((h, _), base) in parts.iter().zip(&bases) {
            inner.producers.record(h, *base);
        }
        if inner.unflushed_messages == 0 {
            inner.unflushed_since_ms = now_ms;
        }
        inner.unflushed_messages += count;
        let needs_sync = inner.unflushed_messages >= config.flush_messages.max(1) as u64;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_start_offset: log_start,
            needs_sync,
            visible: true,
            duplicate: false,
            log_append_time_ms: prepared.log_append_time_ms,
        })
    }

    fn roll(&self, inner: &mut Inner, now_ms: i64) -> Result<(), LogError> {
        let next = inner.next_offset();
        let active = inner.active_mut();
        // A closed segment is exactly its data: give back what was preallocated first.
        active.trim()?;
        active.persist_indexes()?;
        let file = active.file.clone();
        inner.rolled_unsynced.push(file);
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

    /// Fsyncs the partition if its oldest unflushed data is older than `flush.ms`.
    pub fn flush_if_due(&self, config: &TopicConfig, now_ms: i64) -> Result<bool, LogError> {
        let due = {
            let inner = self.inner.read().map_err(lock_err)?;
            inner.unflushed_messages > 0
                && now_ms.saturating_sub(inner.unflushed_since_ms) >= config.flush_ms
        };
        if due {
            self.flush()?;
        }
        Ok(due)
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

    /// Reads whole batches from `offset`, at most `max_bytes` (but at least one batch with
    /// `min_one`). With `durable_only`, nothing past the fsynced offset is returned.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
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
                        records = seg.read_at(pos, max_bytes.min(limit), min_one, limit)?;
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
        // across the whole log (active segment included), and decide whether the log is dirty
        // enough: compact when the share of closed bytes not compacted since the last pass
        // reaches `min.cleanable.dirty.ratio`, or when uncompacted data is older than
        // `max.compaction.lag.ms` (Kafka's log cleaner rules, at segment granularity).
        let (closed, all, clean_up_to): (Vec<ClosedSegment>, Vec<SegmentFile>, i64) = {
            let inner = self.inner.read().map_err(lock_err)?;
            let n = inner.segments.len();
            let closed: Vec<ClosedSegment> = inner
                .segments
                .values()
                .take(n.saturating_sub(1))
                .take_while(|s| now_ms - s.max_timestamp >= config.min_compaction_lag_ms)
                .map(|s| (s.base_offset, s.file.clone(), s.size, s.max_timestamp))
                .collect();
            let Some(&(last_base, ..)) = closed.last() else {
                return Ok(0);
            };
            let clean_up_to = inner.segments[&last_base].next_offset;
            let first_dirty = inner.cleaner.first_dirty;
            // KIP-534: a log whose kept tombstones have outlived delete.retention.ms is
            // cleaned again even when nothing new is dirty.
            let tombstones_due = inner.cleaner.tombstone_horizon.is_some_and(|h| now_ms > h);
            let clean_bytes: u64 = inner
                .segments
                .values()
                .take(n - 1)
                .filter(|s| s.next_offset <= first_dirty)
                .map(|s| s.size)
                .sum();
            let dirty: Vec<&Segment> = closed
                .iter()
                .map(|(b, ..)| &inner.segments[b])
                .filter(|s| s.next_offset > first_dirty)
                .collect();
            let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
            if dirty_bytes == 0 && !tombstones_due {
                return Ok(0);
            }
            let ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
            let overdue = match dirty.first() {
                Some(s) => s
                    .first_batch_timestamp()?
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > config.max_compaction_lag_ms),
                None => false,
            };
            if ratio < config.min_cleanable_dirty_ratio && !overdue && !tombstones_due {
                return Ok(0);
            }
            let all = inner
                .segments
                .values()
                .map(|s| (s.file.clone(), s.size))
                .collect();
            (closed, all, clean_up_to)
        };
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
        let mut horizon: Option<i64> = None;
        for (base, file, size, _) in closed {
            let (n, h) = self.clean_segment(base, &file, size, &latest, config, now_ms)?;
            removed += n;
            horizon = match (horizon, h) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let checkpoint = CleanerCheckpoint {
            first_dirty: clean_up_to,
            tombstone_horizon: horizon,
        };
        checkpoint.write(&self.dir)?;
        self.inner.write().map_err(lock_err)?.cleaner = checkpoint;
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
    ) -> Result<(usize, Option<i64>), LogError> {
        let mut out: Vec<u8> = Vec::with_capacity(size as usize);
        let mut removed = 0usize;
        // When the earliest tombstone kept now may be dropped (its delete horizon).
        let mut horizon: Option<i64> = None;
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
            for r in keep.iter().filter(|r| r.key.is_some() && r.value.is_none()) {
                let h = r.timestamp.saturating_add(config.delete_retention_ms);
                horizon = Some(horizon.map_or(h, |x| x.min(h)));
            }
            removed += n - keep.len();
            if keep.len() == n {
                out.extend_from_slice(bytes);
            } else if !keep.is_empty() {
                let header = BatchHeader::parse(bytes);
                let codec = header.map(|h| h.compression()).unwrap_or(0);
                match batch::encode_records(&keep, codec) {
                    Ok(b) => {
                        let start = out.len();
                        out.extend_from_slice(&b);
                        // The encoder writes CreateTime batches: keep a LogAppendTime stamp.
                        if let Some(h) = header.filter(BatchHeader::is_log_append_time) {
                            batch::stamp_log_append_time(&mut out[start..], h.max_timestamp);
                        }
                    }
                    Err(e) => err = Some(e),
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if removed == 0 {
            return Ok((0, horizon));
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
            return Ok((0, horizon));
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
        Ok((removed, horizon))
    }

    /// Writes indexes of every segment (on clean shutdown) and fsyncs.
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        let mut inner = self.inner.write().map_err(lock_err)?;
        inner.active_mut().trim()?;
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
/// Where the last compaction pass ended (Kafka's cleaner-offset-checkpoint, per partition).
const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// What the last compaction pass left: offsets below `first_dirty` are compacted, and the
/// earliest tombstone it kept may be dropped after `tombstone_horizon` (record time + the
/// topic's delete.retention.ms). Persisted as `<first_dirty> [<horizon>]`.
#[derive(Debug, Clone, Copy, Default)]
struct CleanerCheckpoint {
    first_dirty: i64,
    tombstone_horizon: Option<i64>,
}

impl CleanerCheckpoint {
    fn read(dir: &Path) -> Result<CleanerCheckpoint, LogError> {
        let text = match std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().ok());
        Ok(CleanerCheckpoint {
            first_dirty: parts.next().flatten().unwrap_or(0),
            tombstone_horizon: parts.next().flatten(),
        })
    }

    fn write(&self, dir: &Path) -> Result<(), LogError> {
        let text = match self.tombstone_horizon {
            Some(h) => format!("{} {h}", self.first_dirty),
            None => self.first_dirty.to_string(),
        };
        write_file_atomic(dir, CLEANER_CHECKPOINT_FILE, &text)
    }
}

fn read_log_start(dir: &Path) -> Result<Option<i64>, LogError> {
    match std::fs::read_to_string(dir.join(LOG_START_FILE)) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_log_start(dir: &Path, offset: i64) -> Result<(), LogError> {
    write_file_atomic(dir, LOG_START_FILE, &offset.to_string())
}

/// Writes a small file beside the segments, replaced atomically.
fn write_file_atomic(dir: &Path, name: &str, text: &str) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}
