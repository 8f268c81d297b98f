//! `weir bench pipeline`: the Connect runtime end to end in this process, over a real broker
//! and disk storage, against a baseline measured in the same run:
//!
//! - baseline: the broker's own in-process append rate (2,000-record batches of 100-byte JSON
//!   values through `BrokerHandle::produce`);
//! - (a) datagen → topic → null-sink, no transform, no converter: records/s end to end (the
//!   sink's group committing the last offset), against the baseline (goal ≥ 70%);
//! - (b) the same with JsonConverter, InsertField + MaskField and a Rust WebAssembly transform
//!   (`--wasm`, e.g. json-rewrite; goal ≥ 500,000 records/s);
//! - (c) three connectors: time from create to the first record stored (goal < 1 s), and
//!   resident memory of the process before and after (goal ≤ 60 MB, plus ≤ 5 MB per task).
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
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * 4096.0 / 1e6)
        .unwrap_or(f64::NAN)
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
    let dir = std::env::temp_dir().join(format!("weir-bench-pipeline-{}", std::process::id()));
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
    let plugins = dir.join("plugins");
    if let Some(w) = &args.wasm {
        let p = host
            .load(w)
            .with_context(|| format!("cannot load {}", w.display()))?;
        let d = p.describe(&host)?;
        let to = plugins.join(&d.name);
        std::fs::create_dir_all(&to)?;
        std::fs::copy(w, to.join(format!("{}.wasm", d.version)))?;
    }
    let registry = weir_connect::Registry::new(Arc::new(host), Some(plugins));
    let worker = weir_connect::WorkerConfig {
        offset_flush_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let cluster: Arc<dyn weir_cluster::Cluster> =
        Arc::new(weir_cluster::Embedded::new(handle.clone()));
    let rt = weir_connect::Runtime::start(cluster, Arc::new(registry), worker).await?;
    let count = n.to_string();

    // (a) datagen -> topic -> null-sink.
    let t0 = Instant::now();
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
    let took = wait_committed(&handle, "connect-a-snk", "a", n as i64, t0).await?;
    let a = n as f64 / took.as_secs_f64();
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
        ("topic", "b"),
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
    if let Some(w) = &args.wasm {
        let name = host_name(w)?;
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
    let t0 = Instant::now();
    rt.create("b-src", src).await?;
    rt.create(
        "b-snk",
        map(&[("connector.class", "null-sink"), ("topics", "b")]),
    )
    .await?;
    let took = wait_committed(&handle, "connect-b-snk", "b", n as i64, t0).await?;
    let b = n as f64 / took.as_secs_f64();
    println!(
        "(b)       the same with {chain}: {:>10.0} records/s (goal >= 500,000: {})",
        b,
        if b >= 500_000.0 && args.wasm.is_some() {
            "met"
        } else if args.wasm.is_none() {
            "not measured without --wasm"
        } else {
            "missed"
        }
    );
    rt.delete("b-src").await?;
    rt.delete("b-snk").await?;

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
    let _ = stop.send(true);
    let _ = served.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The registry name of a transform component (its descriptor's name).
fn host_name(w: &std::path::Path) -> anyhow::Result<String> {
    let host = weir_host::Host::new(weir_host::HostConfig::default())?;
    Ok(host.load(w)?.describe(&host)?.name)
}
