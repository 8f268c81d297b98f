//! `weir bench pipeline`: the Connect runtime end to end in this process, over a real broker
//! and disk storage, against a baseline measured in the same run:
//!
//! - baseline: the broker's own in-process append rate (2,000-record batches of 100-byte JSON
//!   values through `BrokerHandle::produce`);
//! - (a) datagen → topic → null-sink, no transform, no converter: records/s end to end (the
//!   sink's group committing the last offset), against the baseline (goal ≥ 70%);
//! - (b) the same with JsonConverter, InsertField + MaskField and a Rust WebAssembly transform
//!   (`--wasm`, e.g. json-rewrite; goal ≥ 500,000 records/s), with one source task and then
//!   with two (`tasks.max=2`, both appending to the one partition);
//! - (c) three connectors: time from create to the first record stored (goal < 1 s), and
//!   resident memory of the process before and after (goal ≤ 60 MB, plus ≤ 5 MB per task);
//! - (d) with `--failing-wasm` (a transform that traps on every batch, e.g. trap.wasm): run (a)
//!   again while a third connector's task keeps trapping and restarting (backoff 100 ms), against
//!   (a)'s solo rate (goal: within 20%).
//!
//! Prints figures and a verdict per goal; never fails on a timing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// A Rust WebAssembly transform for run (b) (e.g. json_rewrite.wasm, which renames a
    /// field; its config with --wasm-config). Without it, (b) runs the native transforms only.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// KEY=VALUE config of the --wasm transform (repeatable).
    #[arg(long = "wasm-config")]
    wasm_config: Vec<String>,
    /// A WebAssembly transform that fails every batch (e.g. trap.wasm) for run (d).
    #[arg(long = "failing-wasm")]
    failing_wasm: Option<PathBuf>,
}

/// Copies a transform into the plugins dir as `<name>/<version>.wasm`; its registry name.
fn install(
    host: &weir_host::Host,
    w: &std::path::Path,
    plugins: &std::path::Path,
) -> anyhow::Result<String> {
    let p = host
        .load(w)
        .with_context(|| format!("cannot load {}", w.display()))?;
    let d = p.describe(host)?;
    let to = plugins.join(&d.name);
    std::fs::create_dir_all(&to)?;
    std::fs::copy(w, to.join(format!("{}.wasm", d.version)))?;
    Ok(d.name)
}

pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * 4096.0 / 1e6)
        .unwrap_or(f64::NAN)
}

pub(crate) fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A broker in this process over disk storage in a temporary directory (removed on stop),
/// and the Connect runtime over it once [`Rig::connect`] is called.
pub(crate) struct Rig {
    pub dir: PathBuf,
    pub broker: weir_broker::BrokerHandle,
    stop: tokio::sync::watch::Sender<bool>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Rig {
    pub async fn start(name: &str) -> anyhow::Result<Rig> {
        let dir = std::env::temp_dir().join(format!("weir-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let storage = weir_log::DiskStorage::open(weir_log::LogOptions {
            dir: dir.join("data"),
            defaults: Default::default(),
            flush: weir_log::FlushMode::None,
        })?;
        let cfg = weir_broker::BrokerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        };
        let broker = weir_broker::Broker::bind(cfg, Arc::new(storage)).await?;
        let handle = broker.handle();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(broker.serve(rx));
        Ok(Rig {
            dir,
            broker: handle,
            stop,
            served,
        })
    }

    /// The Connect runtime over the broker (offsets flushed every 100 ms, failed tasks
    /// restarted after 100 ms), with `plugins` as its plugin directory.
    pub async fn connect(
        &self,
        host: weir_host::Host,
        plugins: Option<PathBuf>,
    ) -> anyhow::Result<weir_connect::Runtime> {
        let registry = weir_connect::Registry::new(Arc::new(host), plugins);
        let worker = weir_connect::WorkerConfig {
            offset_flush_interval: Duration::from_millis(100),
            restart: Some(weir_connect::Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(100),
            }),
            ..Default::default()
        };
        let cluster: Arc<dyn weir_cluster::Cluster> =
            Arc::new(weir_cluster::Embedded::new(self.broker.clone()));
        Ok(weir_connect::Runtime::start(cluster, Arc::new(registry), worker).await?)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.served.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The steady rate of a pipeline into `topic` and out through `group`: from the first
/// record stored (so the plugins' start is not counted) until `group` has committed `n` on
/// partition 0, over the records stored after that first moment.
async fn rate(
    broker: &weir_broker::BrokerHandle,
    group: &str,
    topic: &str,
    n: i64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (t0, base) = loop {
        let end = broker.offsets(topic, 0).map(|o| o.log_end).unwrap_or(0);
        if end > 0 {
            break (Instant::now(), end);
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing reached {topic} in 60 s");
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let took = wait_committed(broker, group, topic, n, t0).await?;
    Ok((n - base) as f64 / took.as_secs_f64())
}

/// Waits until `group` has committed `n` on `topic`'s partition 0; the time it took.
async fn wait_committed(
    broker: &weir_broker::BrokerHandle,
    group: &str,
    topic: &str,
    n: i64,
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if broker
            .committed(group)
            .get(&(topic.to_string(), 0))
            .copied()
            >= Some(n)
        {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{group} did not reach {n} in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let n = args.records.max(2000);
    let rig = Rig::start("pipeline").await?;
    let handle = rig.broker.clone();
    let rss_broker = rss_mb();

    // Baseline: the broker appending ready batches of the records datagen makes.
    let pad = "x".repeat(100 - r#"{"id":0000000,"key":null,"ts":1700000000000,"pad":""}"#.len());
    let recs: Vec<_> = (0..2000)
        .map(|i| {
            let v = format!(r#"{{"id":{i:07},"key":null,"ts":1700000000000,"pad":"{pad}"}}"#);
            weir_log::batch::new_record(None, Some(v.as_bytes()), 1_700_000_000_000)
        })
        .collect();
    let batch = weir_log::batch::build(&recs);
    handle.create_topic("baseline", 1, BTreeMap::new())?;
    let t0 = Instant::now();
    for _ in 0..n / 2000 {
        handle.produce("baseline", 0, &batch).await?;
    }
    let base = (n / 2000 * 2000) as f64 / t0.elapsed().as_secs_f64();
    println!(
        "baseline  broker append, in process        {:>12.0} records/s",
        base
    );

    let host = weir_host::Host::new(weir_host::HostConfig {
        cache_dir: crate::plugin::cache_dir(),
        memory_limit: 256 << 20,
        call_deadline: Duration::from_secs(30),
    })?;
    let plugins = rig.dir.join("plugins");
    let wasm_name = match &args.wasm {
        Some(w) => Some(install(&host, w, &plugins)?),
        None => None,
    };
    let failing_name = match &args.failing_wasm {
        Some(w) => Some(install(&host, w, &plugins)?),
        None => None,
    };
    let rt = rig.connect(host, Some(plugins)).await?;
    let count = n.to_string();

    // (a) datagen -> topic -> null-sink.
    rt.create(
        "a-src",
        map(&[
            ("connector.class", "datagen"),
            ("topic", "a"),
            ("count", &count),
            ("value.size", "100"),
        ]),
    )
    .await?;
    rt.create(
        "a-snk",
        map(&[("connector.class", "null-sink"), ("topics", "a")]),
    )
    .await?;
    let a = rate(&handle, "connect-a-snk", "a", n as i64).await?;
    println!(
        "(a)       datagen -> topic -> null-sink     {:>12.0} records/s  = {:.0}% of the baseline (goal >= 70%: {})",
        a,
        100.0 * a / base,
        if a >= 0.7 * base { "met" } else { "missed" }
    );
    rt.delete("a-src").await?;
    rt.delete("a-snk").await?;

    // (b) with converters and transforms on the source side.
    let mut src = map(&[
        ("connector.class", "datagen"),
        ("count", &count),
        ("value.size", "100"),
        (
            "value.converter",
            "org.apache.kafka.connect.json.JsonConverter",
        ),
        ("value.converter.schemas.enable", "false"),
        ("transforms", "insert,mask"),
        (
            "transforms.insert.type",
            "org.apache.kafka.connect.transforms.InsertField$Value",
        ),
        ("transforms.insert.static.field", "via"),
        ("transforms.insert.static.value", "weir"),
        (
            "transforms.mask.type",
            "org.apache.kafka.connect.transforms.MaskField$Value",
        ),
        ("transforms.mask.fields", "pad"),
    ]);
    let mut chain = "InsertField + MaskField".to_string();
    if let Some(name) = &wasm_name {
        src.insert("transforms".into(), "insert,mask,wasm".into());
        src.insert("transforms.wasm.type".into(), name.clone());
        for kv in &args.wasm_config {
            let (k, v) = kv
                .split_once('=')
                .context("--wasm-config takes KEY=VALUE")?;
            src.insert(format!("transforms.wasm.{k}"), v.to_string());
        }
        chain.push_str(&format!(" + {name} (wasm)"));
    }
    // One source task, then two (Kafka Connect's way to use a second core: `tasks.max`).
    for tasks in [1, 2] {
        let topic = format!("b{tasks}");
        let mut src = src.clone();
        src.insert("topic".into(), topic.clone());
        src.insert("tasks.max".into(), tasks.to_string());
        let (s, k) = (format!("b{tasks}-src"), format!("b{tasks}-snk"));
        rt.create(&s, src).await?;
        rt.create(
            &k,
            map(&[("connector.class", "null-sink"), ("topics", &topic)]),
        )
        .await?;
        let b = rate(&handle, &format!("connect-{k}"), &topic, n as i64).await?;
        println!(
            "(b)       the same with {chain}, {tasks} source task(s): {:>10.0} records/s (goal >= 500,000: {})",
            b,
            if b >= 500_000.0 && args.wasm.is_some() {
                "met"
            } else if args.wasm.is_none() {
                "not measured without --wasm"
            } else {
                "missed"
            }
        );
        rt.delete(&s).await?;
        rt.delete(&k).await?;
    }

    // (d) (a) again, next to a connector whose transform fails every batch.
    if let Some(name) = &failing_name {
        rt.create(
            "d-fail",
            map(&[
                ("connector.class", "datagen"),
                ("topic", "d-fail"),
                ("transforms", "boom"),
                ("transforms.boom.type", name),
            ]),
        )
        .await?;
        // It has failed and restarted at least once before the measured run starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt
            .status("d-fail")
            .await?
            .tasks
            .first()
            .map_or(0, |t| t.restarts)
            < 1
        {
            anyhow::ensure!(Instant::now() < deadline, "d-fail did not fail within 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let restarts_before = rt.status("d-fail").await?.tasks[0].restarts;
        rt.create(
            "d-src",
            map(&[
                ("connector.class", "datagen"),
                ("topic", "d"),
                ("count", &count),
                ("value.size", "100"),
            ]),
        )
        .await?;
        rt.create(
            "d-snk",
            map(&[("connector.class", "null-sink"), ("topics", "d")]),
        )
        .await?;
        let d = rate(&handle, "connect-d-snk", "d", n as i64).await?;
        let restarts = rt.status("d-fail").await?.tasks[0].restarts - restarts_before;
        println!(
            "(d)       (a) next to a task that traps ({restarts} restarts meanwhile): {:>10.0} records/s = {:.0}% of (a) (goal >= 80%: {})",
            d,
            100.0 * d / a,
            if d >= 0.8 * a { "met" } else { "missed" }
        );
        for c in ["d-fail", "d-src", "d-snk"] {
            rt.delete(c).await?;
        }
    }

    // (c) three connectors: first record, memory.
    let rss_before = rss_mb();
    let t0 = Instant::now();
    rt.create(
        "c-src",
        map(&[
            ("connector.class", "datagen"),
            ("topic", "c"),
            ("rate", "100"),
        ]),
    )
    .await?;
    rt.create(
        "c-snk",
        map(&[("connector.class", "null-sink"), ("topics", "c")]),
    )
    .await?;
    rt.create(
        "c-snk2",
        map(&[("connector.class", "null-sink"), ("topics", "c")]),
    )
    .await?;
    let first = loop {
        if handle.offsets("c", 0).map(|o| o.log_end).unwrap_or(0) >= 1 {
            break t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_mb();
    let per_task = (rss_after - rss_before) / 3.0;
    println!(
        "(c)       3 connectors: first record stored after {:.0} ms (goal < 1 s: {})",
        first.as_secs_f64() * 1000.0,
        if first < Duration::from_secs(1) {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "          resident memory: {rss_broker:.1} MB with the broker, {rss_before:.1} MB after the runs above, {rss_after:.1} MB with 3 tasks ({per_task:.1} MB per task; goals <= 60 MB and <= 5 MB per task: {}, {})",
        if rss_broker <= 60.0 { "met" } else { "missed" },
        if per_task <= 5.0 { "met" } else { "missed" }
    );
    rt.shutdown().await;
    rig.stop().await;
    Ok(())
}
