//! A sink task's loop: fetch its partitions from their committed offsets, decode each stored
//! batch once into the contract's batch layout, `put` it, and every
//! `offset.flush.interval.ms` (and on stop) ask the plugin to `flush` and commit, as the group
//! `connect-<name>`, only what it reports durable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_batch::{Batch, BatchBuilder, RecordData};
use weir_cluster::ClusterError;
use weir_host::types::LogPosition;

use crate::errors::{DeadRecord, Failure, Reporter, Stage, bad_record};
use crate::pipe::Pipeline;
use crate::task::TaskCtx;

/// Most bytes one fetch reads from a partition.
const FETCH_BYTES: usize = 1 << 20;
/// Longest a task waits for new records before checking its flags again.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The group a sink connector's offsets are committed under.
pub fn group(connector: &str) -> String {
    format!("connect-{connector}")
}

pub(crate) fn run(ctx: TaskCtx, assignment: Vec<(String, i32)>) {
    let span = tracing::info_span!("task", connector = %ctx.connector, task = ctx.control.id);
    let _g = span.enter();
    ctx.supervise(|ctx| run_inner(ctx, &assignment));
    tracing::info!("sink task stopped");
}

/// One assigned partition: the next offset to fetch, and the last offset put.
#[derive(Debug)]
struct Part {
    topic: String,
    partition: i32,
    next: i64,
}

fn run_inner(ctx: &TaskCtx, assignment: &[(String, i32)]) -> Result<(), Failure> {
    let group = group(&ctx.connector);
    let committed = ctx
        .rt
        .block_on(ctx.cluster.committed(&group))
        .map_err(|e| format!("cannot read the committed offsets of {group}: {e}"))?;
    let mut parts = Vec::new();
    let mut open_at = Vec::new();
    for (t, p) in assignment {
        let next = match committed.get(&(t.clone(), *p)) {
            Some(o) => {
                open_at.push(LogPosition {
                    topic: t.clone(),
                    partition: *p,
                    offset: o - 1,
                });
                *o
            }
            // Kafka Connect's sinks start at the earliest offset.
            None => {
                ctx.rt
                    .block_on(ctx.cluster.offsets(t, *p))
                    .map_err(|e| format!("{t}-{p}: {e}"))?
                    .log_start
            }
        };
        parts.push(Part {
            topic: t.clone(),
            partition: *p,
            next,
        });
    }
    tracing::info!(
        partitions = parts.len(),
        "sink task starting after its committed offsets"
    );
    let mut tc = ctx.grants.clone();
    tc.task = ctx.name();
    let mut task = ctx.plugin.sink(&ctx.host, &ctx.config, &open_at, &tc)?;
    let mut pipeline = if ctx.pipe.passthrough() {
        None
    } else {
        match Pipeline::new(ctx.pipe.clone(), &ctx.host, &ctx.name()) {
            Ok(p) => Some(p),
            Err(e) => return fail_closing(&mut task, e),
        }
    };
    let mut pos = Positions::default();
    let mut next_flush = Instant::now() + ctx.worker.offset_flush_interval;
    let result = loop {
        if ctx.control.stopping() {
            break Ok(());
        }
        if Instant::now() >= next_flush {
            if let Err(e) = flush(ctx, &mut task, &group, &mut pos) {
                break Err(e.into());
            }
            next_flush = Instant::now() + ctx.worker.offset_flush_interval;
        }
        if ctx.control.paused() || parts.is_empty() {
            ctx.nap(IDLE_WAIT);
            continue;
        }
        let mut got = 0usize;
        for i in 0..parts.len() {
            // Wait for data only on the last partition of a round that found nothing.
            let wait = if got == 0 && i + 1 == parts.len() {
                IDLE_WAIT
            } else {
                Duration::ZERO
            };
            match read(
                ctx,
                &mut parts[i],
                wait,
                ctx.worker.batch_records as usize,
                pipeline.as_mut(),
                &ctx.reporter,
            ) {
                Ok(Some((batch, last))) => {
                    got += 1;
                    let tp = (parts[i].topic.clone(), parts[i].partition);
                    if let Some((batch, delivered)) = batch {
                        if let Err(e) = put(&mut task, batch, &ctx.reporter) {
                            return fail_closing(&mut task, e);
                        }
                        pos.delivered.insert(tp.clone(), delivered.max(0).min(last));
                    }
                    pos.read.insert(tp, last);
                }
                Ok(None) => {}
                Err(e) => return fail_closing(&mut task, e),
            }
        }
    };
    let flushed = flush(ctx, &mut task, &group, &mut pos);
    if let Err(e) = task.close() {
        tracing::warn!(error = %e, "sink close failed");
    }
    result.and(flushed.map_err(Failure::from))
}

/// Puts a batch; a record the plugin reports bad is handed to the error reporter (which
/// fails the task unless errors are tolerated) and the rest of the batch is put again.
fn put(
    task: &mut weir_host::SinkTask,
    mut batch: Vec<u8>,
    reporter: &Reporter,
) -> Result<(), Failure> {
    loop {
        let Err(e) = task.put(&batch) else {
            return Ok(());
        };
        let Some((index, message)) = bad_record(&e) else {
            return Err(e.into());
        };
        let parsed = Batch::parse(&batch).map_err(|e| Failure::retriable(e.to_string()))?;
        let Some(r) = parsed.get(index as usize) else {
            return Err(e.into());
        };
        reporter.report(Stage::TaskPut, None, DeadRecord::of(&r), &message)?;
        let rest: Vec<u32> = (0..parsed.len() as u32).filter(|i| *i != index).collect();
        if rest.is_empty() {
            return Ok(());
        }
        batch =
            weir_batch::select(&parsed, &rest).map_err(|e| Failure::retriable(e.to_string()))?;
    }
}

fn fail_closing(task: &mut weir_host::SinkTask, e: impl Into<Failure>) -> Result<(), Failure> {
    let e = e.into();
    if !task.is_poisoned()
        && let Err(c) = task.close()
    {
        tracing::warn!(error = %c, "sink close failed");
    }
    Err(e)
}

/// Reads from one partition: the batch for the plugin (none when the transforms dropped every
/// record) and the last offset read, or nothing.
fn read(
    ctx: &TaskCtx,
    part: &mut Part,
    wait: Duration,
    max_records: usize,
    pipeline: Option<&mut Pipeline>,
    reporter: &Reporter,
) -> Result<Option<Read>, Failure> {
    let fetched = ctx.rt.block_on(ctx.cluster.fetch(
        &part.topic,
        part.partition,
        part.next,
        FETCH_BYTES,
        wait,
    ));
    let f = match fetched {
        Ok(f) => f,
        Err(ClusterError::OffsetOutOfRange {
            offset, log_start, ..
        }) => {
            // Retention removed records before they were read: go on from the oldest kept.
            tracing::warn!(
                topic = %part.topic, partition = part.partition, offset, log_start,
                "records were deleted before this sink read them; skipping to the oldest kept"
            );
            part.next = log_start;
            return Ok(None);
        }
        Err(e) => {
            return Err(format!("cannot read {}-{}: {e}", part.topic, part.partition).into());
        }
    };
    // Paused while the fetch waited: keep the position, put nothing.
    if f.records.is_empty() || ctx.control.paused() {
        return Ok(None);
    }
    let mut b = BatchBuilder::with_capacity(256, f.records.len());
    let mut count = 0usize;
    let mut last = None;
    let mut bad_name = false;
    let covered = weir_log::raw::for_each_record(&f.records, part.next, |r| {
        if count >= max_records {
            return;
        }
        last = Some(r.offset);
        count += 1;
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers()
            .map(|(n, v)| {
                let n = std::str::from_utf8(n).unwrap_or_else(|_| {
                    bad_name = true;
                    ""
                });
                (n, v)
            })
            .collect();
        b.push(&RecordData {
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: &headers,
            topic: &part.topic,
            partition: Some(part.partition),
            offset: Some(r.offset),
            source_partition: None,
            source_offset: None,
        });
    })
    .map_err(|e| format!("{}-{}: {e}", part.topic, part.partition))?;
    if bad_name {
        tracing::warn!(topic = %part.topic, partition = part.partition, "a header name is not UTF-8; it is passed on empty");
    }
    let Some(last) = last else {
        // Only control records or records before our position: move past them.
        if let Some(c) = covered {
            part.next = part.next.max(c + 1);
        }
        return Ok(None);
    };
    part.next = last + 1;
    let read = b
        .finish()
        .map_err(|e| format!("cannot build a batch: {e}"))?;
    let batch = match pipeline {
        Some(p) => {
            let parsed =
                Batch::parse_trusted(&read).map_err(|e| format!("cannot read a batch: {e}"))?;
            p.sink_batch(&parsed, reporter)?
        }
        None => Some((read, last)),
    };
    Ok(Some((batch, last)))
}

/// What one read gives: the batch for the plugin with its last offset (none when the chain
/// dropped every record), and the last offset read.
type Read = (Option<(Vec<u8>, i64)>, i64);

/// Per partition: the last offset read, and the last offset handed to the plugin, since the
/// last commit.
#[derive(Debug, Default)]
struct Positions {
    read: BTreeMap<(String, i32), i64>,
    delivered: BTreeMap<(String, i32), i64>,
}

/// Asks the plugin to make what was put durable, and commits what it reports: where all it
/// was given is durable (or the transforms dropped everything read), up to what was read.
fn flush(
    ctx: &TaskCtx,
    task: &mut weir_host::SinkTask,
    group: &str,
    pos: &mut Positions,
) -> Result<(), String> {
    if pos.read.is_empty() || task.is_poisoned() {
        return Ok(());
    }
    let durable: BTreeMap<(String, i32), i64> = if pos.delivered.is_empty() {
        BTreeMap::new()
    } else {
        let up_to: Vec<LogPosition> = pos
            .delivered
            .iter()
            .map(|((t, p), o)| LogPosition {
                topic: t.clone(),
                partition: *p,
                offset: *o,
            })
            .collect();
        task.flush(&up_to)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|d| ((d.topic, d.partition), d.offset))
            .collect()
    };
    let mut commit = BTreeMap::new();
    for (tp, read) in &pos.read {
        let next = match (pos.delivered.get(tp), durable.get(tp)) {
            (None, _) => Some(read + 1),
            (Some(given), Some(d)) if d >= given => Some(read + 1),
            (Some(_), Some(d)) => Some(d + 1),
            (Some(_), None) => None,
        };
        if let Some(n) = next {
            commit.insert(tp.clone(), n);
        }
    }
    if commit.is_empty() {
        return Ok(());
    }
    ctx.rt
        .block_on(ctx.cluster.commit(group, commit.clone()))
        .map_err(|e| format!("cannot commit the offsets of {group}: {e}"))?;
    for (tp, next) in commit {
        if pos.read.get(&tp) == Some(&(next - 1)) {
            pos.read.remove(&tp);
            pos.delivered.remove(&tp);
        }
    }
    Ok(())
}
