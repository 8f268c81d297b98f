//! Parallel snapshots (`snapshot.max.threads` > 1, up to `tasks.max`): the initial snapshot is
//! read by several tasks at once, each reading its share of the captured tables in one
//! consistent snapshot, and streaming starts once every share is in the log.
//!
//! - **The plan.** `task_configs` measures each captured table's heap (`pg_relation_size` in
//!   blocks) and splits it: a large table into one range of blocks per reader (`ctid >=
//!   '(lo,0)' AND ctid < '(hi,0)'`, a TID range scan, no index, no sort, no lock; the last
//!   range is open-ended, so rows written since the plan are still read), a small one whole
//!   to the least loaded reader. Block ranges cover every row of a table exactly once
//!   whatever its key, so tables without a primary key split too. Every task config carries
//!   the whole plan and the task's place in it.
//! - **One snapshot.** Task 0 (the one that owns the slot and streams) opens its snapshot
//!   transaction (in the snapshot the new slot exported, or a repeatable-read one over a slot
//!   that existed) and exports it again (`pg_export_snapshot()`), which stays importable
//!   while that transaction is open: until every share is in the log. It publishes the name,
//!   with an epoch (its start time), as its session's `application_name`; the other tasks
//!   find it in `pg_stat_activity` (same role, so visible without privileges) and import it.
//! - **The hand-over.** A reader whose share is in the log (its last record acked) says so in
//!   its own `application_name`, with the epoch; task 0, once its own share is in the log and
//!   every reader said so for its epoch, closes the snapshot transaction and writes a
//!   heartbeat record carrying its stream position (what a restart resumes from), and only
//!   then streams, so a change never reaches a topic before the snapshot row it changes.
//! - **Restarts.** A reader restarted mid-snapshot reads its share again (in the same
//!   snapshot while task 0 still holds it). Task 0 restarted before the hand-over was stored
//!   takes the snapshot again under a new epoch, and every reader reads its share again.
//!   After the hand-over readers stay idle (they look for a new epoch every few seconds).
//!
//! With several readers no record says `snapshot: last` (no reader knows it is the last one);
//! the hand-over heartbeat marks the end.

pub use weir_cdc_common::parallel::{PLAN, READER, Range};

/// Below this many heap blocks (8 KiB each) per task a table is read whole by one task.
pub const MIN_SPLIT_BLOCKS: u64 = 128;

/// The condition that reads exactly this range of heap blocks (none: the whole table).
pub fn filter(r: &Range) -> Option<String> {
    match (r.lo, r.hi) {
        (None, None) => None,
        (Some(lo), None) => Some(format!("ctid >= '({lo},0)'::tid")),
        (None, Some(hi)) => Some(format!("ctid < '({hi},0)'::tid")),
        (Some(lo), Some(hi)) => Some(format!(
            "ctid >= '({lo},0)'::tid AND ctid < '({hi},0)'::tid"
        )),
    }
}

/// What names a slot's rendezvous in `application_name` (at most 63 bytes): a hash of the
/// slot's name (unique on the server).
pub fn tag(slot: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in slot.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Task 0's `application_name` while its snapshot is open to readers.
pub fn published(tag: &str, epoch: i64, snapshot: &str) -> String {
    format!("weir-snap:{tag}:{epoch}:{snapshot}")
}

/// The `LIKE` pattern that finds task 0's published snapshot.
pub fn published_pattern(tag: &str) -> String {
    format!("weir-snap:{tag}:%")
}

/// The epoch and snapshot name in task 0's `application_name`.
pub fn parse_published(tag: &str, name: &str) -> Option<(i64, String)> {
    let rest = name.strip_prefix("weir-snap:")?.strip_prefix(tag)?;
    let rest = rest.strip_prefix(':')?;
    let (epoch, snapshot) = rest.split_once(':')?;
    Some((epoch.parse().ok()?, snapshot.to_string()))
}

/// A reader's `application_name` once its share of `epoch` is in the log.
pub fn done(tag: &str, epoch: i64, reader: u32) -> String {
    format!("weir-done:{tag}:{epoch}:{reader}")
}

pub fn done_pattern(tag: &str, epoch: i64) -> String {
    format!("weir-done:{tag}:{epoch}:%")
}

/// The reader a `done` name is from, when it is about this epoch.
pub fn parse_done(tag: &str, epoch: i64, name: &str) -> Option<u32> {
    name.strip_prefix(&format!("weir-done:{tag}:{epoch}:"))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ranges_read_as_tid_range_scans() {
        let plan = weir_cdc_common::parallel::plan(
            &[weir_cdc_common::parallel::Span {
                schema: "public".into(),
                table: "big".into(),
                first: 0,
                end: 10_000,
            }],
            3,
            MIN_SPLIT_BLOCKS,
        );
        let f: Vec<Option<String>> = plan.iter().map(|s| filter(&s[0])).collect();
        assert_eq!(
            f,
            [
                Some("ctid < '(3333,0)'::tid".into()),
                Some("ctid >= '(3333,0)'::tid AND ctid < '(6666,0)'::tid".into()),
                Some("ctid >= '(6666,0)'::tid".into()),
            ]
        );
        let whole = Range {
            schema: "s".into(),
            table: "t".into(),
            lo: None,
            hi: None,
        };
        assert_eq!(filter(&whole), None);
    }

    #[test]
    fn rendezvous_names_fit_and_parse() {
        let tag = tag("a_slot_name_that_is_as_long_as_postgres_allows_sixty_three_ch");
        let p = published(&tag, 1_764_570_000_000, "00000003-0000001B-1");
        assert!(p.len() <= 63, "{p} is {} bytes", p.len());
        assert_eq!(
            parse_published(&tag, &p),
            Some((1_764_570_000_000, "00000003-0000001B-1".into()))
        );
        assert_eq!(parse_published("00000000", &p), None);
        let d = done(&tag, 17, 3);
        assert!(d.len() <= 63);
        assert_eq!(parse_done(&tag, 17, &d), Some(3));
        assert_eq!(parse_done(&tag, 18, &d), None);
        assert_ne!(super::tag("slot_a"), super::tag("slot_b"));
    }
}
