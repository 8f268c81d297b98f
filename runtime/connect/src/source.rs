//! A source task's loop: poll the plugin, route each record to its topic partition, append
//! the partitions' batches to the log (concurrently, on the async runtime, while the plugin
//! is polled for the next batch), and only once they are in the log ack the plugin and keep
//! its source offsets, which go to `connect-offsets` every `offset.flush.interval.ms` and on
//! stop. After a crash, only records polled after the last stored offsets are read again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use weir_batch::Batch;
use weir_cluster::Cluster;

use weir_log::raw::BatchEncoder;

use crate::errors::Failure;
use crate::pipe::Pipeline;
use crate::store::{TopicStore, offset_key, parse_offset_key};
use crate::task::TaskCtx;

/// Longest wait between polls of a source that had nothing.
const IDLE_MAX: Duration = Duration::from_millis(100);

pub(crate) fn run(ctx: TaskCtx, offsets: TopicStore, default_topic: Option<String>) {
    let span = tracing::info_span!("task", connector = %ctx.connector, task = ctx.control.id);
    let _g = span.enter();
    ctx.supervise(|ctx| run_inner(ctx, &offsets, default_topic.as_deref()));
    tracing::info!("source task stopped");
}

fn run_inner(
    ctx: &TaskCtx,
    offsets: &TopicStore,
    default_topic: Option<&str>,
) -> Result<(), Failure> {
    // The offsets stored for this connector.
    let stored: Vec<(Vec<u8>, Vec<u8>)> = ctx
        .rt
        .block_on(offsets.read_all())
        .map_err(|e| format!("cannot read source offsets from {}: {e}", offsets.topic()))?
        .into_iter()
        .filter_map(|(k, v)| {
            let (c, p) = parse_offset_key(&k)?;
            let offset: serde_json::Value = serde_json::from_slice(&v).ok()?;
            (c == ctx.connector).then(|| (p, crate::store::json_to_bytes(&offset)))
        })
        .collect();
    tracing::info!(
        partitions = stored.len(),
        "source task starting at its stored offsets"
    );
    let mut tc = ctx.grants.clone();
    tc.task = ctx.name();
    let mut task = ctx.plugin.source(&ctx.host, &ctx.config, &stored, &tc)?;
    ctx.control.set_streams(task.stream_stats());
    let mut router = Router::default();
    let mut pipeline = if ctx.pipe.passthrough() {
        None
    } else {
        Some(Pipeline::new(ctx.pipe.clone(), &ctx.host, &ctx.name()).map_err(Failure::from)?)
    };
    // Offsets acked but not yet written to the offsets topic.
    let mut pending: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut next_flush = Instant::now() + ctx.worker.offset_flush_interval;
    let mut idle = Duration::from_millis(1);
    // The previous batch's appends, running while the plugin is polled again.
    let mut inflight: Option<InFlight> = None;
    let result = loop {
        if ctx.control.stopping() {
            break Ok(());
        }
        if Instant::now() >= next_flush {
            if let Err(e) = flush_offsets(ctx, offsets, &mut pending) {
                break Err(e.into());
            }
            next_flush = Instant::now() + ctx.worker.offset_flush_interval;
        }
        if ctx.control.paused() {
            if let Err(e) = land(ctx, &mut task, &mut pending, inflight.take()) {
                break Err(e);
            }
            ctx.nap(IDLE_MAX);
            continue;
        }
        let polled = match task.poll(ctx.worker.batch_records) {
            Ok(b) => b,
            Err(e) => break Err(e.into()),
        };
        // The host validated it (`SourceTask::poll`).
        let batch = match Batch::parse_trusted(&polled) {
            Ok(b) => b,
            Err(e) => break Err(format!("poll returned a bad batch: {e}").into()),
        };
        if batch.is_empty() {
            if let Err(e) = land(ctx, &mut task, &mut pending, inflight.take()) {
                break Err(e);
            }
            ctx.nap(idle);
            idle = (idle * 2).min(IDLE_MAX);
            continue;
        }
        idle = Duration::from_millis(1);
        let appends = match encode(ctx, &mut router, pipeline.as_mut(), &batch, default_topic) {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        let acked: Vec<(Vec<u8>, Vec<u8>)> = batch
            .last_source_offsets()
            .into_iter()
            .map(|(p, o)| (p.to_vec(), o.to_vec()))
            .collect();
        // One batch's appends start once the previous one's are in the log (a partition's
        // records stay in order).
        if let Err(e) = land(ctx, &mut task, &mut pending, inflight.take()) {
            break Err(e);
        }
        let cluster = ctx.cluster.clone();
        inflight = Some(InFlight {
            appends: ctx.rt.spawn(append(cluster, appends)),
            acked,
        });
    };
    // Whatever happened, what was stored in the log keeps its offsets.
    let landed = land(ctx, &mut task, &mut pending, inflight.take());
    let flushed = flush_offsets(ctx, offsets, &mut pending);
    if let Err(e) = task.close() {
        tracing::warn!(error = %e, "source close failed");
    }
    result.and(landed).and(flushed.map_err(Failure::from))
}

/// A polled batch's appends to the log, and the source offsets they make safe to keep.
struct InFlight {
    appends: tokio::task::JoinHandle<Result<(), String>>,
    acked: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Waits for a batch's appends; once all of it is in the log, the plugin may forget it
/// (ack) and its offsets may be kept.
fn land(
    ctx: &TaskCtx,
    task: &mut weir_host::SourceTask,
    pending: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    inflight: Option<InFlight>,
) -> Result<(), Failure> {
    let Some(f) = inflight else {
        return Ok(());
    };
    ctx.rt
        .block_on(f.appends)
        .map_err(|e| Failure::from(format!("the append task failed: {e}")))?
        .map_err(Failure::from)?;
    task.ack(&f.acked)?;
    pending.extend(f.acked);
    Ok(())
}

fn flush_offsets(
    ctx: &TaskCtx,
    offsets: &TopicStore,
    pending: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = pending
        .iter()
        .map(|(p, o)| {
            let v = serde_json::to_vec(&crate::store::bytes_to_json(o)).unwrap_or_default();
            (offset_key(&ctx.connector, p), Some(v))
        })
        .collect();
    ctx.rt
        .block_on(offsets.put(&records))
        .map_err(|e| format!("cannot store source offsets: {e}"))?;
    tracing::debug!(partitions = records.len(), "source offsets stored");
    pending.clear();
    Ok(())
}

/// Picks partitions as Kafka's default partitioner does: murmur2 of the key, or one partition
/// per batch for records without a key (sticky).
#[derive(Debug, Default)]
struct Router {
    partitions: HashMap<String, u32>,
    sticky: u32,
}

impl Router {
    fn partitions(&mut self, ctx: &TaskCtx, topic: &str) -> Result<u32, String> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        ctx.control.used_topic(topic);
        let t = ctx
            .rt
            .block_on(ctx.cluster.ensure_topic(topic))
            .map_err(|e| format!("topic {topic}: {e}"))?;
        self.partitions
            .insert(topic.to_string(), t.partitions.max(1));
        Ok(t.partitions.max(1))
    }
}

/// The Kafka batches being built from one polled batch, one per (topic, partition), found
/// without allocating per record (sources mostly write one topic partition per poll).
#[derive(Default)]
struct Groups {
    list: Vec<(String, i32, BatchEncoder)>,
    last: usize,
    /// Room the first batch gets (the polled batch's size: usually all of it goes there).
    room: usize,
}

/// A Kafka batch the source task appends grows to about this many bytes, then the next
/// records of its partition start another (a topic's `max.message.bytes` is 1 MiB by default).
const MAX_APPEND_BYTES: usize = 512 << 10;

impl Groups {
    fn get(&mut self, topic: &str, partition: i32) -> &mut BatchEncoder {
        let hit = |(t, p, _): &(String, i32, BatchEncoder)| *p == partition && t == topic;
        if !self.list.get(self.last).is_some_and(hit) {
            self.last = match self.list.iter().rposition(hit) {
                Some(i) => i,
                None => {
                    let enc = BatchEncoder::with_capacity(
                        std::mem::take(&mut self.room).min(MAX_APPEND_BYTES),
                    );
                    self.list.push((topic.to_string(), partition, enc));
                    self.list.len() - 1
                }
            };
        }
        if self.list[self.last].2.byte_len() >= MAX_APPEND_BYTES {
            self.list.push((
                topic.to_string(),
                partition,
                BatchEncoder::with_capacity(MAX_APPEND_BYTES),
            ));
            self.last = self.list.len() - 1;
        }
        &mut self.list[self.last].2
    }

    /// The batches per partition, in record order.
    fn by_partition(self) -> Vec<(String, i32, Vec<BatchEncoder>)> {
        let mut out: Vec<(String, i32, Vec<BatchEncoder>)> = Vec::new();
        for (t, p, enc) in self.list {
            match out.iter_mut().find(|(ot, op, _)| *op == p && *ot == t) {
                Some((_, _, v)) => v.push(enc),
                None => out.push((t, p, vec![enc])),
            }
        }
        out
    }
}

/// A partition's Kafka batches, in record order.
type Appends = Vec<(String, i32, Vec<BatchEncoder>)>;

/// A polled batch as Kafka batches, one or more per (topic, partition), in record order.
/// Through the pipeline (converters, transforms) when the connector has one, else byte for
/// byte.
fn encode(
    ctx: &TaskCtx,
    router: &mut Router,
    pipeline: Option<&mut Pipeline>,
    batch: &Batch<'_>,
    default_topic: Option<&str>,
) -> Result<Appends, Failure> {
    let now = weir_log::now_ms();
    router.sticky = router.sticky.wrapping_add(1);
    let mut groups = Groups {
        room: batch.byte_len(),
        ..Groups::default()
    };
    // The previous record's topic and its partition count.
    let mut cached: Option<(String, u32)> = None;
    let mut add = |i: usize,
                   topic: &str,
                   partition: Option<i32>,
                   ts: i64,
                   key: Option<&[u8]>,
                   value: Option<&[u8]>,
                   headers: &[(&[u8], Option<&[u8]>)]|
     -> Result<(), String> {
        let topic = match (topic, default_topic) {
            ("", Some(d)) => d,
            ("", None) => {
                return Err(format!(
                    "record {i} has no topic and the connector sets no `topic`"
                ));
            }
            (t, _) => t,
        };
        let n = match &cached {
            Some((t, n)) if t == topic => *n,
            _ => {
                let n = router.partitions(ctx, topic)?;
                cached = Some((topic.to_string(), n));
                n
            }
        };
        let partition = match (partition, key) {
            (Some(p), _) if p >= 0 && (p as u32) < n => p,
            (Some(p), _) => {
                return Err(format!(
                    "record {i} asks for partition {p} of {topic}, which has {n}"
                ));
            }
            (None, Some(k)) => weir_client::murmur2_partition(k, n as i32),
            (None, None) => (router.sticky % n) as i32,
        };
        let ts = if ts > 0 { ts } else { now };
        groups
            .get(topic, partition)
            .push(ts, key, value, headers.iter().copied());
        Ok(())
    };
    // Records whose bytes go to the log as polled (or cut out of their envelope) are added
    // borrowed from the batch; the rest go through the pipeline as owned records.
    let sides = match pipeline {
        None => Ok(None),
        Some(p) => p.source_direct(batch).map(Some).ok_or(p),
    };
    match sides {
        Ok(sides) => {
            let mut headers: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
            for r in batch.iter() {
                headers.clear();
                headers.extend(r.headers().map(|h| (h.name.as_bytes(), h.value)));
                let (key, value) = match &sides {
                    Some(s) => s[r.index()],
                    None => (r.key(), r.value()),
                };
                add(
                    r.index(),
                    r.topic(),
                    r.partition(),
                    r.timestamp(),
                    key,
                    value,
                    &headers,
                )?;
            }
        }
        Err(p) => {
            for (i, r) in p
                .source_records(batch, &ctx.reporter)?
                .into_iter()
                .enumerate()
            {
                let headers: Vec<(&[u8], Option<&[u8]>)> = r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_bytes(), v.as_deref()))
                    .collect();
                add(
                    i,
                    &r.topic,
                    r.partition,
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &headers,
                )?;
            }
        }
    }
    Ok(groups.by_partition())
}

/// Appends the batches: partitions at once, one partition's batches one after another.
async fn append(cluster: std::sync::Arc<dyn Cluster>, appends: Appends) -> Result<(), String> {
    let cluster = &cluster;
    let appends = appends.into_iter().map(|(t, p, encs)| async move {
        for enc in encs {
            cluster
                .produce(&t, p, enc.finish())
                .await
                .map_err(|e| format!("cannot append to {t}-{p}: {e}"))?;
        }
        Ok::<(), String>(())
    });
    futures_util::future::try_join_all(appends)
        .await
        .map(|_| ())
}
