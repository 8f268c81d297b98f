//! `weir.toml`: the configuration file, overridden by `WEIR_*` environment variables
//! (`WEIR_LOG__FLUSH=batch` sets `[log] flush`), overridden by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub broker: BrokerSection,
    pub log: LogSection,
}

/// `[broker]`: the Kafka listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// Node id reported to clients.
    pub node_id: i32,
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; defaults to `listen`.
    pub advertised: Option<String>,
    /// Create topics on first use (Metadata for an unknown topic).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    pub num_partitions: u32,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Most record bytes one fetch response carries, whatever the client asks for (Kafka's
    /// `fetch.max.bytes`; 1 MiB by default, where Kafka has 55 MiB: local consumers read
    /// faster from smaller responses; raise it for consumers with a long round trip).
    pub fetch_max_bytes: usize,
    /// Wait after the first member joins an empty group before completing its first
    /// rebalance, so members starting together share one generation (milliseconds).
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a group member may ask for (milliseconds).
    pub group_min_session_timeout_ms: u64,
    /// Largest session timeout a group member may ask for (milliseconds).
    pub group_max_session_timeout_ms: u64,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            fetch_max_bytes: weir_broker::DEFAULT_FETCH_MAX_BYTES,
            group_initial_rebalance_delay_ms: 300,
            group_min_session_timeout_ms: 1000,
            group_max_session_timeout_ms: 1_800_000,
        }
    }
}

/// `[log]`: storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Data directory.
    pub dir: PathBuf,
    /// `none` (the OS writes back; survives a process crash) or `batch` (every produce waits for
    /// an fsync shared with concurrent produces; survives power loss).
    pub flush: weir_log::FlushMode,
    /// Fsync a partition once this many messages are unflushed (the default of every topic's
    /// `flush.messages`, Kafka's `log.flush.interval.messages`).
    pub flush_messages: Option<u64>,
    /// Fsync a partition whose oldest unflushed data is this old, in milliseconds (the default
    /// of every topic's `flush.ms`, Kafka's `log.flush.interval.ms`).
    pub flush_ms: Option<u64>,
    /// How often retention and compaction run (milliseconds).
    pub retention_check_interval_ms: u64,
    /// Default `retention.ms` for topics.
    pub retention_ms: i64,
    /// Default `retention.bytes` for topics.
    pub retention_bytes: i64,
    /// Default `segment.bytes` for topics.
    pub segment_bytes: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        let d = weir_log::TopicConfig::default();
        LogSection {
            dir: PathBuf::from("weir-data"),
            flush: weir_log::FlushMode::None,
            flush_messages: None,
            flush_ms: None,
            retention_check_interval_ms: 300_000,
            retention_ms: d.retention_ms,
            retention_bytes: d.retention_bytes,
            segment_bytes: d.segment_bytes,
        }
    }
}

/// Loads defaults, then the file (if any), then the environment.
pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(f) => {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        None if Path::new("weir.toml").exists() => fig = fig.merge(Toml::file("weir.toml")),
        None => {}
    }
    fig = fig.merge(
        Env::prefixed("WEIR_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                k.starts_with("broker__") || k.starts_with("log__")
            })
            .split("__"),
    );
    fig.extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("weir.toml");
        std::fs::write(
            &f,
            "[broker]\nlisten = \"127.0.0.1:19092\"\n[log]\nflush = \"batch\"\n",
        )
        .unwrap();
        let c = load(Some(&f)).unwrap();
        assert_eq!(c.broker.listen.port(), 19092);
        assert_eq!(c.log.flush, weir_log::FlushMode::Batch);
        std::fs::write(&f, "[log]\nflussh = \"batch\"\n").unwrap();
        let err = load(Some(&f)).unwrap_err().to_string();
        assert!(err.contains("flussh"), "{err}");
        assert!(load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own Error type
    fn environment_overrides() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WEIR_LOG__RETENTION_CHECK_INTERVAL_MS", "200");
            jail.set_env("WEIR_LOG__FLUSH", "batch");
            jail.set_env("WEIR_BIN", "/not/a/config/key");
            let c = load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.log.retention_check_interval_ms, 200);
            assert_eq!(c.log.flush, weir_log::FlushMode::Batch);
            Ok(())
        });
    }
}
