//! Parallel snapshots (`snapshot.max.threads` > 1, up to `tasks.max`): the plan that splits
//! the snapshot over a connector's tasks, carried in every task's config.
//!
//! A table is a span of positions `[first, end)` in some physical order the database reads
//! by range cheaply (PostgreSQL: heap blocks, read with a TID range scan; SQLite: rowids, the
//! table's b-tree key). A large table is cut into one range per task (task `i` gets range
//! `i`); the first range is open below and the last open above, so rows written where the
//! plan did not look are still read, and the ranges cover every row exactly once. Small
//! tables go whole to the least loaded task, largest first.

/// Task config keys `task-configs` adds.
pub const READER: &str = "weir.snapshot.reader";
pub const PLAN: &str = "weir.snapshot.plan";

/// The most tasks a parallel snapshot spreads over (each holds pooled connections).
pub const MAX_READERS: u32 = 8;

/// A part of one table a task snapshots: positions `lo <= p < hi` (none: unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub schema: String,
    pub table: String,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl Range {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// Whether the range is the whole table.
    pub fn whole(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }
}

/// A table to plan: `schema.table` and its span of positions `[first, end)`.
#[derive(Debug, Clone)]
pub struct Span {
    pub schema: String,
    pub table: String,
    pub first: i64,
    pub end: i64,
}

/// How many tasks read a snapshot: `snapshot.max.threads`, at most `tasks.max` and
/// [`MAX_READERS`].
pub fn readers(threads: u32, max_tasks: u32) -> u32 {
    threads.min(max_tasks).clamp(1, MAX_READERS)
}

/// Splits tables over `n` tasks: a table of at least `min_split` positions per task into `n`
/// ranges, the others whole, each to the task with the least planned so far.
pub fn plan(tables: &[Span], n: usize, min_split: u64) -> Vec<Vec<Range>> {
    let n = n.max(1);
    let mut out: Vec<Vec<Range>> = vec![Vec::new(); n];
    let mut load = vec![0u64; n];
    let size = |t: &Span| t.end.saturating_sub(t.first).max(0) as u64;
    let mut sorted: Vec<&Span> = tables.iter().collect();
    sorted.sort_by(|a, b| {
        size(b)
            .cmp(&size(a))
            .then_with(|| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)))
    });
    for t in sorted {
        let range = |lo, hi| Range {
            schema: t.schema.clone(),
            table: t.table.clone(),
            lo,
            hi,
        };
        let s = size(t);
        if n > 1 && s >= min_split.saturating_mul(n as u64).max(n as u64) {
            let cut = |i: usize| t.first + (s as u128 * i as u128 / n as u128) as i64;
            for (i, share) in out.iter_mut().enumerate() {
                let lo = (i > 0).then(|| cut(i));
                let hi = (i + 1 < n).then(|| cut(i + 1));
                share.push(range(lo, hi));
                load[i] += (cut(i + 1) - cut(i)) as u64;
            }
        } else {
            let i = (0..n).min_by_key(|&i| (load[i], i)).unwrap_or(0);
            out[i].push(range(None, None));
            load[i] += s.max(1);
        }
    }
    out
}

/// The plan as a task config value (JSON: per task, `[schema, table, lo|null, hi|null]`).
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
    let bound = |b: &serde_json::Value| match b {
        serde_json::Value::Null => Ok(None),
        b => b.as_i64().map(Some).ok_or_else(bad),
    };
    v.as_array()
        .ok_or_else(bad)?
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
                        lo: bound(&r[2])?,
                        hi: bound(&r[3])?,
                    })
                })
                .collect()
        })
        .collect()
}

/// The tasks' configs: `config` (less any plan keys it had) once per task, with its place
/// and the plan.
pub fn task_configs(
    config: &[(String, String)],
    plan: &[Vec<Range>],
) -> Vec<Vec<(String, String)>> {
    let mut base = config.to_vec();
    base.retain(|(k, _)| k != READER && k != PLAN);
    if plan.len() <= 1 {
        return vec![base];
    }
    let encoded = encode(plan);
    (0..plan.len())
        .map(|i| {
            let mut c = base.clone();
            c.push((READER.into(), i.to_string()));
            c.push((PLAN.into(), encoded.clone()));
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, first: i64, end: i64) -> Span {
        Span {
            schema: "public".into(),
            table: name.into(),
            first,
            end,
        }
    }

    #[test]
    fn a_large_table_splits_into_contiguous_ranges_that_cover_it() {
        let p = plan(&[t("big", 0, 10_000)], 3, 128);
        assert_eq!(p.len(), 3);
        let r: Vec<&Range> = p.iter().map(|s| &s[0]).collect();
        // Open below and above: rows where the plan did not look are still read.
        assert_eq!((r[0].lo, r[0].hi), (None, Some(3333)));
        assert_eq!((r[1].lo, r[1].hi), (Some(3333), Some(6666)));
        assert_eq!((r[2].lo, r[2].hi), (Some(6666), None));
        // Spans that do not start at 0 (rowids), even negative ones.
        let p = plan(&[t("ids", -100, 1_000_000)], 2, 128);
        assert_eq!((p[0][0].lo, p[0][0].hi), (None, Some(499_950)));
        assert_eq!((p[1][0].lo, p[1][0].hi), (Some(499_950), None));
    }

    #[test]
    fn small_tables_go_whole_to_the_least_loaded_task() {
        let p = plan(
            &[
                t("a", 0, 10),
                t("b", 0, 200),
                t("c", 0, 0),
                t("big", 0, 1000),
            ],
            2,
            128,
        );
        assert!(!p[0][0].whole() && !p[1][0].whole() && p[0][0].table == "big");
        let mut whole: Vec<&str> = p
            .iter()
            .flatten()
            .filter(|r| r.whole())
            .map(|r| r.table.as_str())
            .collect();
        whole.sort();
        assert_eq!(whole, ["a", "b", "c"], "each small table exactly once");
        assert!(p[0].iter().any(|r| r.table == "b") != p[1].iter().any(|r| r.table == "b"));
    }

    #[test]
    fn one_task_reads_every_table_whole_and_gets_no_plan_keys() {
        let p = plan(&[t("a", 0, 10), t("big", 0, 100_000)], 1, 128);
        assert!(p[0].iter().all(Range::whole));
        let config = vec![
            ("k".to_string(), "v".to_string()),
            (PLAN.into(), "x".into()),
        ];
        assert_eq!(
            task_configs(&config, &p),
            vec![vec![("k".to_string(), "v".to_string())]]
        );
    }

    #[test]
    fn plans_round_trip_through_task_configs() {
        let p = plan(&[t("x\"y", 0, 5000), t("small", 0, 3)], 4, 128);
        let configs = task_configs(&[("k".into(), "v".into())], &p);
        assert_eq!(configs.len(), 4);
        for (i, c) in configs.iter().enumerate() {
            assert_eq!(c[1], (READER.to_string(), i.to_string()));
            assert_eq!(decode(&c[2].1).unwrap(), p);
        }
        assert!(decode("[[1]]").is_err());
        assert!(decode("nope").is_err());
        assert_eq!(readers(4, 2), 2);
        assert_eq!(readers(20, 20), MAX_READERS);
        assert_eq!(readers(0, 3), 1);
    }
}
