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

/// Task config keys `task_configs` adds.
pub const READER: &str = "weir.snapshot.reader";
pub const PLAN: &str = "weir.snapshot.plan";

/// Below this many heap blocks (8 KiB each) per reader a table is read whole by one reader.
const MIN_SPLIT_BLOCKS: u64 = 128;

/// A part of one table a reader snapshots: its heap blocks `[lo, hi)` (`hi` none: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub schema: String,
    pub table: String,
    pub lo: u64,
    pub hi: Option<u64>,
}

impl Range {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The condition that reads exactly this range (none: the whole table).
    pub fn filter(&self) -> Option<String> {
        match (self.lo, self.hi) {
            (0, None) => None,
            (lo, None) => Some(format!("ctid >= '({lo},0)'::tid")),
            (0, Some(hi)) => Some(format!("ctid < '({hi},0)'::tid")),
            (lo, Some(hi)) => Some(format!(
                "ctid >= '({lo},0)'::tid AND ctid < '({hi},0)'::tid"
            )),
        }
    }
}

/// Splits tables (schema, table, heap blocks) over `n` readers: each large table into `n`
/// block ranges (reader `i` gets range `i`), the others whole, largest first, each to the
/// reader with the least planned so far.
pub fn plan(tables: &[(String, String, u64)], n: usize) -> Vec<Vec<Range>> {
    let n = n.max(1);
    let mut out: Vec<Vec<Range>> = vec![Vec::new(); n];
    let mut load = vec![0u64; n];
    let mut sorted: Vec<&(String, String, u64)> = tables.iter().collect();
    sorted.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    for (schema, table, blocks) in sorted {
        let range = |lo, hi| Range {
            schema: schema.clone(),
            table: table.clone(),
            lo,
            hi,
        };
        if n > 1 && *blocks >= MIN_SPLIT_BLOCKS * n as u64 {
            let b = *blocks;
            for (i, share) in out.iter_mut().enumerate() {
                let lo = b * i as u64 / n as u64;
                let hi = (i + 1 < n).then(|| b * (i as u64 + 1) / n as u64);
                share.push(range(lo, hi));
                load[i] += hi.unwrap_or(b) - lo;
            }
        } else {
            let i = (0..n).min_by_key(|&i| (load[i], i)).unwrap_or(0);
            out[i].push(range(0, None));
            load[i] += (*blocks).max(1);
        }
    }
    out
}

/// The plan as a task config value (JSON: per reader, `[schema, table, lo, hi|null]`).
pub fn encode(plan: &[Vec<Range>]) -> String {
    let v: Vec<Vec<serde_json::Value>> = plan
        .iter()
        .map(|share| {
            share
                .iter()
                .map(|r| serde_json::json!([r.schema, r.table, r.lo, r.hi]))
                .collect()
        })
        .collect();
    serde_json::Value::from(v).to_string()
}

pub fn decode(s: &str) -> Result<Vec<Vec<Range>>, String> {
    let bad = || format!("{PLAN}: not a snapshot plan: {s:?}");
    let v: serde_json::Value = serde_json::from_str(s).map_err(|_| bad())?;
    let shares = v.as_array().ok_or_else(bad)?;
    shares
        .iter()
        .map(|share| {
            share
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|r| {
                    let r = r.as_array().filter(|r| r.len() == 4).ok_or_else(bad)?;
                    Ok(Range {
                        schema: r[0].as_str().ok_or_else(bad)?.to_string(),
                        table: r[1].as_str().ok_or_else(bad)?.to_string(),
                        lo: r[2].as_u64().ok_or_else(bad)?,
                        hi: match &r[3] {
                            serde_json::Value::Null => None,
                            h => Some(h.as_u64().ok_or_else(bad)?),
                        },
                    })
                })
                .collect()
        })
        .collect()
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

    fn t(name: &str, blocks: u64) -> (String, String, u64) {
        ("public".into(), name.into(), blocks)
    }

    #[test]
    fn a_large_table_splits_into_contiguous_ranges_that_cover_it() {
        let p = plan(&[t("big", 10_000)], 3);
        assert_eq!(p.len(), 3);
        let ranges: Vec<&Range> = p.iter().map(|s| &s[0]).collect();
        assert_eq!(ranges[0].lo, 0);
        assert_eq!(ranges[0].hi, Some(ranges[1].lo));
        assert_eq!(ranges[1].hi, Some(ranges[2].lo));
        // The last range is open-ended: rows written after the plan are read too.
        assert_eq!(ranges[2].hi, None);
        assert_eq!(ranges[0].filter(), Some("ctid < '(3333,0)'::tid".into()));
        assert_eq!(
            ranges[1].filter(),
            Some("ctid >= '(3333,0)'::tid AND ctid < '(6666,0)'::tid".into())
        );
        assert_eq!(ranges[2].filter(), Some("ctid >= '(6666,0)'::tid".into()));
    }

    #[test]
    fn small_tables_go_whole_to_the_least_loaded_reader() {
        let p = plan(&[t("a", 10), t("b", 200), t("c", 0), t("big", 1000)], 2);
        // big splits (500 each); b goes to reader 0, a to reader 1, c to reader 1 or 0.
        let names = |i: usize| {
            p[i].iter()
                .map(|r| (r.table.as_str(), r.filter().is_none()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0)[0], ("big", false));
        assert_eq!(names(1)[0], ("big", false));
        let whole: Vec<&str> = p
            .iter()
            .flatten()
            .filter(|r| r.filter().is_none())
            .map(|r| r.table.as_str())
            .collect();
        let mut sorted = whole.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "each small table exactly once");
        // Balanced: b (200) on one side, a + c on the other.
        assert!(p[0].iter().any(|r| r.table == "b") != p[1].iter().any(|r| r.table == "b"));
    }

    #[test]
    fn one_reader_reads_every_table_whole() {
        let p = plan(&[t("a", 10), t("big", 100_000)], 1);
        assert_eq!(p.len(), 1);
        assert!(p[0].iter().all(|r| r.filter().is_none()));
    }

    #[test]
    fn plans_round_trip_through_task_configs() {
        let p = plan(&[t("x\"y", 5000), t("small", 3)], 4);
        assert_eq!(decode(&encode(&p)).unwrap(), p);
        assert!(decode("[[1]]").is_err());
        assert!(decode("nope").is_err());
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
