//! `weir-broker`: a single-node Kafka broker over a [`weir_log::Storage`].
//!
//! It owns the Kafka wire protocol: framing, request decoding (through the `kafka-protocol`
//! crate), version negotiation, and one handler per API. It never touches files itself; the
//! storage engine does. Each connection reads requests in order and answers them in order, but
//! a request's answer may wait (a produce for its fsync, a fetch for data) while later requests
//! on the same connection are already being read, so one fsync covers many pipelined produces.
//!
//! Use [`Broker::bind`] then [`Broker::serve`] with a shutdown signal.

mod acl;
mod admin;
pub mod alloc;
mod configs;
mod conn;
mod errors;
mod fetch;
mod frame;
mod group_api;
pub mod groups;
mod handle;
mod metadata;
mod produce;
mod sync;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use weir_log::Storage;

pub use frame::{DecodeError, decode_request};
pub use handle::{BrokerHandle, Produced};
pub use versions::SUPPORTED_APIS;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to (defaults to `listen`).
    pub advertised: Option<(String, u16)>,
    /// Create a topic when a client asks for metadata of one that does not exist.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (and of CreateTopics with -1).
    pub num_partitions: u32,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Most record bytes one Fetch response carries, whatever the client asks for (Kafka's
    /// broker `fetch.max.bytes`; the first batch may still exceed it, KIP-74).
    pub fetch_max_bytes: usize,
    /// Cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// How often retention and compaction run.
    pub maintenance_interval: Duration,
    /// Consumer group coordinator settings.
    pub group: groups::GroupConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
            cluster_id: "weir-cluster".into(),
            maintenance_interval: Duration::from_secs(300),
            group: groups::GroupConfig::default(),
        }
    }
}

/// Weir's default `fetch.max.bytes`: 1 MiB, where Kafka's is 55 MiB. librdkafka consumes a
/// catch-up read about 1.4x (100 B records) to 2x (1 KiB) faster from 1 MiB responses than
/// from the ~5 MB ones a many-partition fetch gets otherwise (`scripts/bench-broker`, fetch
/// anatomy); a consumer far away (high round-trip time) is better served by a larger value.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1024 * 1024;

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: BrokerConfig,
    pub storage: Arc<dyn Storage>,
    /// Woken after every append (and every fsync round), so waiting fetches re-check.
    pub appended: Arc<Notify>,
    /// The group-commit fsync thread.
    pub syncer: sync::Syncer,
    /// Consumer groups, committed offsets, producer ids.
    pub groups: groups::Coordinator,
    pub advertised: (String, u16),
}

/// A bound broker, ready to serve.
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Broker {
    /// Binds the listener. Port 0 picks a free port; see [`Broker::local_addr`].
    pub async fn bind(cfg: BrokerConfig, storage: Arc<dyn Storage>) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let local = listener.local_addr()?;
        let advertised = cfg
            .advertised
            .clone()
            .unwrap_or_else(|| (local.ip().to_string(), local.port()));
        let appended = Arc::new(Notify::new());
        let syncer = sync::Syncer::start(storage.clone(), appended.clone())?;
        let groups =
            groups::Coordinator::load(storage.clone(), cfg.group).map_err(std::io::Error::other)?;
        Ok(Broker {
            shared: Arc::new(Shared {
                cfg,
                storage,
                appended,
                syncer,
                groups,
                advertised,
            }),
            listener,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true, then stops accepting, lets every connection finish the
    /// requests it has read (bounded by 10 s), and closes the storage cleanly.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let Broker { shared, listener } = self;
        tracing::info!(addr = %listener.local_addr()?, advertised = ?shared.advertised, "broker listening");
        let mut conns = JoinSet::new();
        let background = spawn_background(shared.clone(), shutdown.clone());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(conn::serve(stream, peer, shared.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        tracing::info!(
            connections = conns.len(),
            "shutting down: finishing in-flight requests"
        );
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish in 10 s; closing them");
            conns.abort_all();
        }
        background.abort();
        let _ = background.await;
        let storage = shared.storage.clone();
        tokio::task::spawn_blocking(move || storage.close())
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        tracing::info!("broker stopped");
        Ok(())
    }
}

/// How often partitions are checked against their topic's `flush.ms`.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Retention/compaction and the interval flusher, on blocking threads.
fn spawn_background(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut maintain = tokio::time::interval(shared.cfg.maintenance_interval);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Topics' `flush.ms` is checked this often (Kafka's log.flush.scheduler.interval.ms).
        let mut flush = tokio::time::interval(FLUSH_CHECK_INTERVAL);
        let mut group_tick = tokio::time::interval(Duration::from_millis(100));
        group_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = maintain.tick() => {
                    let storage = shared.storage.clone();
                    match tokio::task::spawn_blocking(move || storage.maintain(weir_log::now_ms())).await {
                        Ok(Ok(r)) if r != Default::default() => tracing::info!(segments_deleted = r.segments_deleted, records_compacted = r.records_compacted, "maintenance pass"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed"),
                        Err(e) => tracing::error!(error = %e, "maintenance task failed"),
                    }
                }
                _ = flush.tick() => {
                    let storage = shared.storage.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || storage.flush_due(weir_log::now_ms())).await {
                        tracing::error!(error = %e, "interval flush failed");
                    }
                }
                _ = group_tick.tick() => shared.groups.tick(),
                _ = shutdown.changed() => return,
            }
        }
    })
}
