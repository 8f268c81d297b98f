//! The `weir` binary: `weir up` runs the broker; the other commands talk to a running one over
//! the Kafka protocol.

#[global_allocator]
static ALLOC: weir_broker::alloc::GuardedAlloc = weir_broker::alloc::GuardedAlloc;

mod bench;
mod config;
mod plugin;
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
    /// Start the broker (Kafka protocol on 127.0.0.1:9092 by default).
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    broker.serve(rx).await.context("broker failed")?;
    Ok(())
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
