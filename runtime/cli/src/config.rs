//! `weir.toml`: the configuration file, overridden by `WEIR_*` environment variables
//! (`WEIR_LOG__FLUSH=batch` sets `[log] flush`), overridden by command-line flags.

use std::collections::BTreeMap;
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
    pub http: HttpSection,
    pub plugins: PluginsSection,
    pub connect: ConnectSection,
    /// `[connectors.<name>]`: connectors declared in the file, created or updated at start.
    /// Keys are Kafka Connect's dotted keys, quoted (`"connector.class" = ...`) or as TOML
    /// dotted keys (`connector.class = ...`).
    pub connectors: BTreeMap<String, serde_json::Value>,
}

/// `[http]`: the REST API listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Serve the Kafka Connect REST API.
    pub enabled: bool,
    /// Address it binds (Kafka Connect's port by default).
    pub listen: SocketAddr,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
        }
    }
}

/// `[plugins]`: where connector plugins are found, and their default limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// Installed plugins, as `<name>/<version>.wasm` (`weir plugin install` writes them).
    pub dir: PathBuf,
    /// Compiled components are cached here (default: ~/.cache/weir/compiled).
    pub cache_dir: Option<PathBuf>,
    /// Linear memory a task may use unless its connector says otherwise (MiB).
    pub memory_limit_mib: u64,
    /// Longest one call into a plugin may run unless its connector says otherwise (ms).
    pub call_deadline_ms: u64,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            dir: PathBuf::from("plugins"),
            cache_dir: None,
            memory_limit_mib: 64,
            call_deadline_ms: 5000,
        }
    }
}

/// `[connect]`: the Connect runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSection {
    /// Run connectors (and serve the REST API for them).
    pub enabled: bool,
    /// Compacted topic of connector configs and target states.
    pub config_topic: String,
    /// Compacted topic of source offsets.
    pub offset_topic: String,
    /// Compacted topic of connector and task statuses.
    pub status_topic: String,
    /// How often source offsets are stored and sink offsets committed (Kafka's
    /// `offset.flush.interval.ms`).
    pub offset_flush_interval_ms: u64,
    /// Most records one source poll or sink put carries.
    pub batch_records: u32,
    /// Restart a failed task by itself (a plugin's `fatal` error excepted), after a backoff
    /// that doubles from `restart_backoff_initial_ms` up to `restart_backoff_max_ms`.
    pub restart_failed_tasks: bool,
    pub restart_backoff_initial_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// How often a running sink's topics are checked again: a new topic matching its
    /// `topics.regex`, or partitions added to its topics, restart its tasks with the new
    /// assignment (Kafka's `metadata.max.age.ms` and a rebalance). 0: never.
    pub topic_refresh_interval_ms: u64,
}

impl Default for ConnectSection {
    fn default() -> Self {
        let w = weir_connect::WorkerConfig::default();
        ConnectSection {
            enabled: true,
            config_topic: w.config_topic,
            offset_topic: w.offset_topic,
            status_topic: w.status_topic,
            offset_flush_interval_ms: w.offset_flush_interval.as_millis() as u64,
            batch_records: w.batch_records,
            restart_failed_tasks: true,
            restart_backoff_initial_ms: 1000,
            restart_backoff_max_ms: 60_000,
            topic_refresh_interval_ms: w.topic_refresh_interval.as_millis() as u64,
        }
    }
}

/// Flattens a declared connector's table into Kafka Connect's string map: nested tables
/// (from TOML dotted keys) join their keys with dots; numbers and booleans become strings.
pub fn connector_config(
    name: &str,
    table: &serde_json::Value,
) -> anyhow::Result<BTreeMap<String, String>> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Number(n) => {
                out.insert(prefix.to_string(), n.to_string());
            }
            Value::Bool(b) => {
                out.insert(prefix.to_string(), b.to_string());
            }
            Value::Array(a) => {
                let items: Vec<String> = a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.insert(prefix.to_string(), items.join(","));
            }
            Value::Null => {}
        }
    }
    if !table.is_object() {
        anyhow::bail!("[connectors.{name}] must be a table of connector config keys");
    }
    let mut out = BTreeMap::new();
    walk("", table, &mut out);
    Ok(out)
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
                ["broker__", "log__", "http__", "plugins__", "connect__"]
                    .iter()
                    .any(|p| k.starts_with(p))
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
    fn declared_connectors_flatten_to_kafka_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("weir.toml");
        std::fs::write(
            &f,
            "[http]\nlisten = \"127.0.0.1:18083\"\n[connect]\noffset_flush_interval_ms = 500\n\
             [connectors.src]\n\"connector.class\" = \"FileStreamSource\"\ntasks.max = 1\n\
             file = \"/tmp/in.txt\"\ntopic = \"t\"\n",
        )
        .unwrap();
        let c = load(Some(&f)).unwrap();
        assert_eq!(c.http.listen.port(), 18083);
        assert_eq!(c.connect.offset_flush_interval_ms, 500);
        let m = connector_config("src", &c.connectors["src"]).unwrap();
        let want: Vec<(&str, &str)> = vec![
            ("connector.class", "FileStreamSource"),
            ("file", "/tmp/in.txt"),
            ("tasks.max", "1"),
            ("topic", "t"),
        ];
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        std::fs::write(&f, "[connect]\nofset_topic = \"x\"\n").unwrap();
        assert!(
            load(Some(&f))
                .unwrap_err()
                .to_string()
                .contains("ofset_topic")
        );
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
