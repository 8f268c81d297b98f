//! The `weir` binary: `weir up` runs the broker; the other commands talk to a running one over
//! the Kafka protocol.

#[global_allocator]
static ALLOC: weir_broker::alloc::GuardedAlloc = weir_broker::alloc::GuardedAlloc;

mod bench;
mod bench_cdc;
mod bench_pipeline;
mod config;
mod connector;
mod loggers;
mod plugin;
mod providers;
mod scaffold;
mod tools;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: a data integration platform with a built-in Kafka-compatible broker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the broker (Kafka protocol on 127.0.0.1:9092), the Connect runtime and its REST
    /// API (127.0.0.1:8083).
    Up(UpArgs),
    /// Create, list, describe and delete topics.
    Topic {
        #[command(subcommand)]
        cmd: tools::TopicCmd,
    },
    /// List, describe, delete consumer groups and reset their offsets.
    Group {
        #[command(subcommand)]
        cmd: tools::GroupCmd,
    },
    /// Create, list, inspect, pause, restart and delete connectors over the REST API.
    Connector(connector::ConnectorArgs),
    /// Inspect and install WebAssembly connector plugins.
    Plugin {
        #[command(subcommand)]
        cmd: plugin::PluginCmd,
    },
    /// Benchmarks that print figures against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Produce records from stdin or a file, one per line.
    Produce(tools::ProduceArgs),
    /// Consume records and print them.
    Consume(tools::ConsumeArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Configuration file (default: ./weir.toml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address of the Kafka listener, overriding the config.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// host:port advertised to clients.
    #[arg(long)]
    advertised: Option<String>,
    /// Data directory, overriding the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Flush mode: none or batch (fsync per produce, group commit).
    #[arg(long)]
    flush: Option<String>,
    /// Address of the REST API (Kafka Connect's), overriding the config.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    /// Directory of installed plugins (`<name>/<version>.wasm`), overriding the config.
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The broker logs at info; client commands keep stderr for warnings and errors.
    let default_level = if matches!(
        cli.cmd,
        Cmd::Up(_)
            | Cmd::Plugin {
                cmd: plugin::PluginCmd::Run(_)
            }
    ) {
        "info"
    } else {
        "warn"
    };
    loggers::init(default_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Up(args) => up(args).await,
            Cmd::Topic { cmd } => tools::topic(cmd).await,
            Cmd::Group { cmd } => tools::group(cmd).await,
            Cmd::Plugin { cmd } => plugin::run(cmd),
            Cmd::Connector(args) => connector::run(args).await,
            Cmd::Bench {
                cmd: bench::BenchCmd::Pipeline(args),
            } => bench_pipeline::run(args).await,
            Cmd::Bench {
                cmd: bench::BenchCmd::Cdc(args),
            } => bench_cdc::run(args).await,
            Cmd::Bench { cmd } => bench::run(cmd),
            Cmd::Produce(args) => tools::produce(args).await,
            Cmd::Consume(args) => tools::consume(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        cfg.broker.listen = l;
    }
    if let Some(a) = args.advertised {
        cfg.broker.advertised = Some(a);
    }
    if let Some(d) = args.data_dir {
        cfg.log.dir = d;
    }
    if let Some(l) = args.http_listen {
        cfg.http.listen = l;
    }
    if let Some(d) = args.plugins_dir {
        cfg.plugins.dir = d;
    }
    // Declared connectors are checked before anything starts.
    let mut declared = Vec::new();
    for (name, table) in &cfg.connectors {
        declared.push((name.clone(), config::connector_config(name, table)?));
    }
    if let Some(f) = args.flush {
        cfg.log.flush = match f.as_str() {
            "none" => weir_log::FlushMode::None,
            "batch" => weir_log::FlushMode::Batch,
            other => anyhow::bail!("--flush must be none or batch, not {other:?}"),
        };
    }
    let advertised = match &cfg.broker.advertised {
        None => None,
        Some(a) => {
            let (h, p) = a.rsplit_once(':').context("advertised must be host:port")?;
            Some((
                h.to_string(),
                p.parse::<u16>()
                    .with_context(|| format!("bad port in advertised {a:?}"))?,
            ))
        }
    };
    let defaults = weir_log::TopicConfig {
        retention_ms: cfg.log.retention_ms,
        retention_bytes: cfg.log.retention_bytes,
        segment_bytes: cfg.log.segment_bytes,
        flush_messages: cfg
            .log
            .flush_messages
            .map_or(i64::MAX, |n| n.clamp(1, i64::MAX as u64) as i64),
        flush_ms: cfg
            .log
            .flush_ms
            .map_or(i64::MAX, |n| n.min(i64::MAX as u64) as i64),
        // Every produce waits for an fsync in batch mode: preallocated segments make each one a
        // single data write (no file size to write; see ARCHITECTURE.md).
        preallocate: cfg.log.flush == weir_log::FlushMode::Batch,
        ..Default::default()
    };
    let dir = cfg.log.dir.clone();
    let storage = tokio::task::spawn_blocking(move || {
        weir_log::DiskStorage::open(weir_log::LogOptions {
            dir,
            defaults,
            flush: cfg.log.flush,
        })
    })
    .await?
    .with_context(|| format!("cannot open data directory {}", cfg.log.dir.display()))?;
    let cluster_id = cluster_id(&cfg.log.dir)?;
    let broker_cfg = weir_broker::BrokerConfig {
        node_id: cfg.broker.node_id,
        listen: cfg.broker.listen,
        advertised,
        auto_create_topics: cfg.broker.auto_create_topics,
        num_partitions: cfg.broker.num_partitions.max(1),
        max_request_bytes: cfg.broker.max_request_bytes,
        fetch_max_bytes: cfg.broker.fetch_max_bytes.max(1024),
        cluster_id,
        maintenance_interval: Duration::from_millis(cfg.log.retention_check_interval_ms.max(10)),
        group: weir_broker::groups::GroupConfig {
            initial_rebalance_delay: Duration::from_millis(
                cfg.broker.group_initial_rebalance_delay_ms,
            ),
            min_session_timeout: Duration::from_millis(cfg.broker.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(cfg.broker.group_max_session_timeout_ms),
        },
    };
    let broker = weir_broker::Broker::bind(broker_cfg, Arc::new(storage))
        .await
        .with_context(|| format!("cannot listen on {}", cfg.broker.listen))?;
    let handle = broker.handle();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(broker.serve(rx));
    // Runs until the signal, then stops HTTP, then the runtime (final flushes and commits),
    // then the broker.
    let connect = async {
        let runtime = if cfg.connect.enabled {
            Some(start_connect(&cfg, handle, declared).await?)
        } else {
            None
        };
        let (http_stop, http_rx) = tokio::sync::oneshot::channel::<()>();
        let http = match (&runtime, cfg.http.enabled) {
            (Some(rt), true) => {
                let listener = tokio::net::TcpListener::bind(cfg.http.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (REST API)", cfg.http.listen))?;
                let rt = rt.clone();
                let levels: Arc<dyn weir_http::LogLevels> = Arc::new(loggers::Levels::new("info"));
                Some(tokio::spawn(weir_http::serve(
                    listener,
                    rt,
                    Some(levels),
                    async {
                        let _ = http_rx.await;
                    },
                )))
            }
            _ => None,
        };
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = http_stop.send(());
        if let Some(h) = http {
            match h.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "REST API failed"),
                Err(e) => tracing::warn!(error = %e, "REST API task failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(rt) = runtime {
            rt.shutdown().await;
        }
        anyhow::Ok(())
    };
    let outcome = connect.await;
    let _ = tx.send(true);
    let served = serving.await.context("broker task failed")?;
    outcome?;
    served.context("broker failed")?;
    Ok(())
}

/// Starts the Connect runtime over the in-process broker, with the declared connectors.
async fn start_connect(
    cfg: &config::Config,
    broker: weir_broker::BrokerHandle,
    declared: Vec<(String, std::collections::BTreeMap<String, String>)>,
) -> anyhow::Result<weir_connect::Runtime> {
    let host = weir_host::Host::new(weir_host::HostConfig {
        cache_dir: cfg.plugins.cache_dir.clone().or_else(plugin::cache_dir),
        memory_limit: (cfg.plugins.memory_limit_mib.clamp(1, 4096) as usize) << 20,
        call_deadline: Duration::from_millis(cfg.plugins.call_deadline_ms.max(1)),
    })
    .context("cannot start the plugin host")?
    .with_sql_backend(Arc::new(
        weir_sql::SqlxBackend::new().context("cannot start the SQL backend")?,
    ));
    let registry = weir_connect::Registry::new(Arc::new(host), Some(cfg.plugins.dir.clone()));
    let worker = weir_connect::WorkerConfig {
        config_topic: cfg.connect.config_topic.clone(),
        offset_topic: cfg.connect.offset_topic.clone(),
        status_topic: cfg.connect.status_topic.clone(),
        offset_flush_interval: Duration::from_millis(cfg.connect.offset_flush_interval_ms.max(1)),
        batch_records: cfg.connect.batch_records.max(1),
        worker_id: cfg.http.listen.to_string(),
        providers: providers::builtin(),
        work_dir: std::env::current_dir().ok(),
        restart: cfg
            .connect
            .restart_failed_tasks
            .then(|| weir_connect::Backoff {
                initial: Duration::from_millis(cfg.connect.restart_backoff_initial_ms.max(1)),
                max: Duration::from_millis(
                    cfg.connect
                        .restart_backoff_max_ms
                        .max(cfg.connect.restart_backoff_initial_ms.max(1)),
                ),
            }),
        topic_refresh_interval: Duration::from_millis(cfg.connect.topic_refresh_interval_ms),
    };
    let cluster: Arc<dyn weir_cluster::Cluster> = Arc::new(weir_cluster::Embedded::new(broker));
    let rt = weir_connect::Runtime::start(cluster, Arc::new(registry), worker)
        .await
        .context("cannot start the Connect runtime")?;
    for (name, config) in declared {
        if let Err(e) = rt.declare(&name, config).await {
            rt.shutdown().await;
            anyhow::bail!("connector {name} declared in the configuration: {e}");
        }
        tracing::info!(connector = %name, "declared connector running");
    }
    Ok(rt)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The cluster id, made once and kept in the data directory.
fn cluster_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("cluster.id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&path, &id)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}
