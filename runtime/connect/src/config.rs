//! A connector's configuration: Kafka Connect's string map, split into the runtime's keys
//! (name, class, tasks, topics, converters, ...), the host's `weir.*` grants and limits, and
//! the plugin's own keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir_host::TaskConfig;

use crate::ConnectError;
use crate::convert::{Converter, Format};

/// A connector config as Kafka Connect's REST API carries it.
pub type ConfigMap = BTreeMap<String, String>;

/// Keys the runtime reads (or, for Kafka keys it does not act on, accepts) and never passes to
/// the plugin.
fn is_runtime_key(k: &str) -> bool {
    const EXACT: &[&str] = &[
        "name",
        "connector.class",
        "tasks.max",
        "tasks.max.enforce",
        "topics",
        "topics.regex",
        "key.converter",
        "value.converter",
        "header.converter",
        "config.action.reload",
        "exactly.once.support",
        "transaction.boundary",
        "offsets.storage.topic",
    ];
    const PREFIXES: &[&str] = &[
        "key.converter.",
        "value.converter.",
        "header.converter.",
        "transforms",
        "predicates",
        "errors.",
        "topic.creation.",
        "consumer.override.",
        "producer.override.",
        "admin.override.",
    ];
    EXACT.contains(&k) || PREFIXES.iter().any(|p| k.starts_with(p))
}

/// What the runtime makes of a connector config.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub class: String,
    pub tasks_max: u32,
    /// Sinks: the topics to read.
    pub topics: Vec<String>,
    /// Sinks: a pattern topics to read must match (whole name).
    pub topics_regex: Option<regex::Regex>,
    /// Grants and limits for every task.
    pub task: TaskConfig,
    /// The plugin's own keys (what `task-configs` and `open` receive), with the `weir.*` keys
    /// that the host reads again per task.
    pub plugin: Vec<(String, String)>,
    /// The whole map, as given.
    pub raw: ConfigMap,
    pub key_converter: Converter,
    pub value_converter: Converter,
    /// How the plugin's key and value bytes are to be read (`weir.key.format`,
    /// `weir.value.format`; else what the plugin declares; else bytes).
    pub key_format: Option<Format>,
    pub value_format: Option<Format>,
    pub errors: crate::ErrorPolicy,
}

impl ConnectorConfig {
    /// Parses and checks everything the runtime owns; the plugin's keys are checked against
    /// its descriptor later.
    pub fn parse(name: &str, raw: &ConfigMap) -> Result<ConnectorConfig, ConnectError> {
        let bad = |m: String| ConnectError::BadConfig(m);
        check_name(name)?;
        if let Some(n) = raw.get("name")
            && n != name
        {
            return Err(bad(format!(
                "name: the config's name {n:?} differs from the connector's name {name:?}"
            )));
        }
        let class = raw
            .get("connector.class")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad("connector.class: missing required configuration \"connector.class\" which has no default value".into())
            })?;
        let tasks_max = match raw.get("tasks.max") {
            None => 1,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "tasks.max: invalid value {v:?}: must be a whole number from 1 to 1024"
                    )));
                }
            },
        };
        let topics: Vec<String> = raw
            .get("topics")
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let topics_regex = match raw.get("topics.regex").map(|s| s.trim()) {
            None | Some("") => None,
            Some(r) => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| bad(format!("topics.regex: invalid pattern {r:?}: {e}")))?,
            ),
        };
        let key_converter = Converter::from_config("key.converter", raw)?;
        let value_converter = Converter::from_config("value.converter", raw)?;
        if let Some(h) = raw.get("header.converter") {
            let short = h.trim().rsplit('.').next().unwrap_or("");
            if !matches!(
                short,
                "SimpleHeaderConverter" | "ByteArrayConverter" | "StringConverter"
            ) {
                return Err(bad(format!(
                    "header.converter: {h:?} is not supported (headers pass through as bytes)"
                )));
            }
        }
        let format = |k: &str| raw.get(k).map(|v| Format::parse(k, v)).transpose();
        let key_format = format("weir.key.format")?;
        let value_format = format("weir.value.format")?;
        let mut plugin: Vec<(String, String)> = raw
            .iter()
            .filter(|(k, _)| {
                !is_runtime_key(k) && !matches!(k.as_str(), "weir.key.format" | "weir.value.format")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Kafka's file connectors name one file: the task is granted its directory.
        if !plugin.iter().any(|(k, _)| k == "weir.dirs") {
            let mut dirs = Vec::new();
            for key in ["file", "directory"] {
                if let Some(v) = raw.get(key) {
                    dirs.push(auto_grant(key, v)?);
                }
            }
            if !dirs.is_empty() {
                dirs.dedup();
                plugin.push(("weir.dirs".into(), dirs.join(",")));
            }
        }
        // A database named by Debezium-style keys is the plugin's SQL grant `db`.
        if !plugin.iter().any(|(k, _)| k == "weir.sql.db.url")
            && let Some(url) = auto_sql_grant(raw)?
        {
            plugin.push(("weir.sql.db.url".into(), url));
            // The grant carries the password: the plugin itself never gets it.
            plugin.retain(|(k, _)| k != "database.password" && k != "connection.password");
        }
        let (task, _) = TaskConfig::from_config(&plugin).map_err(|e| bad(e.to_string()))?;
        let errors = crate::ErrorPolicy::parse(raw)?;
        // As Kafka refuses it: a sink reading its own dead letter queue would feed it forever.
        if let Some(d) = &errors.dlq
            && (topics.contains(d) || topics_regex.as_ref().is_some_and(|r| r.is_match(d)))
        {
            return Err(bad(format!(
                "errors.deadletterqueue.topic.name: the dead letter queue topic {d:?} may not be \
                 one the connector consumes (topics or topics.regex)"
            )));
        }
        Ok(ConnectorConfig {
            name: name.to_string(),
            class,
            tasks_max,
            topics,
            topics_regex,
            task,
            plugin,
            raw: raw.clone(),
            key_converter,
            value_converter,
            key_format,
            value_format,
            errors,
        })
    }

    /// The plugin's keys without the runtime's `weir.*` ones.
    pub fn plugin_keys(&self) -> Vec<(String, String)> {
        self.plugin
            .iter()
            .filter(|(k, _)| !k.starts_with("weir."))
            .cloned()
            .collect()
    }
}

/// Percent-encodes what may not stand as it is in a URL's user, password or path.
fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SQL grant a connector's own keys name: `database.path` (a SQLite file, as
/// sqlite-source takes it) becomes `sqlite://<absolute path>`; Debezium's PostgreSQL keys
/// (`database.hostname`, `database.port`, `database.user`, `database.password`,
/// `database.dbname`, `database.sslmode`) become a `postgres://` URL.
fn auto_sql_grant(raw: &ConfigMap) -> Result<Option<String>, ConnectError> {
    if let Some(url) = raw.get("connection.url").map(|u| u.trim()) {
        return jdbc_url(raw, url).map(Some);
    }
    if let Some(host) = raw.get("database.hostname").map(|h| h.trim()) {
        let get = |k: &str| raw.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let port = get("database.port").unwrap_or("5432");
        if port.parse::<u16>().is_err() {
            return Err(ConnectError::BadConfig(format!(
                "database.port: {port:?} is not a port number"
            )));
        }
        let Some(user) = get("database.user") else {
            return Err(ConnectError::BadConfig(
                "database.user: required with database.hostname".into(),
            ));
        };
        let Some(db) = get("database.dbname") else {
            return Err(ConnectError::BadConfig(
                "database.dbname: required with database.hostname".into(),
            ));
        };
        let password = raw
            .get("database.password")
            .map(|p| format!(":{}", url_part(p)))
            .unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let sslmode = get("database.sslmode").unwrap_or("prefer");
        return Ok(Some(format!(
            "postgres://{}{password}@{host}:{port}/{}?sslmode={}",
            url_part(user),
            url_part(db),
            url_part(sslmode)
        )));
    }
    let Some(path) = raw.get("database.path").map(|p| p.trim()) else {
        return Ok(None);
    };
    let p = std::path::Path::new(path);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ConnectError::BadConfig(format!("database.path: {e}")))?
            .join(p)
    };
    if !abs.is_file() {
        return Err(ConnectError::BadConfig(format!(
            "database.path: {} is not a file (the SQLite database must exist)",
            abs.display()
        )));
    }
    Ok(Some(format!("sqlite://{}", abs.display())))
}

/// A JDBC URL (Debezium's and Confluent's JDBC sinks: `connection.url`, with
/// `connection.username` and `connection.password`) as a SQL grant's URL:
/// `jdbc:postgresql://host:port/db?...` or `jdbc:sqlite:<path>` (created when missing).
fn jdbc_url(raw: &ConfigMap, url: &str) -> Result<String, ConnectError> {
    let bad = |why: &str| ConnectError::BadConfig(format!("connection.url: {why}"));
    if let Some(rest) = url.strip_prefix("jdbc:postgresql://") {
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hostport, db) = main
            .split_once('/')
            .ok_or_else(|| bad("names no database (jdbc:postgresql://host:port/database)"))?;
        if db.is_empty() {
            return Err(bad(
                "names no database (jdbc:postgresql://host:port/database)",
            ));
        }
        let hostport = if hostport.is_empty() {
            "localhost"
        } else {
            hostport
        };
        let user = raw
            .get("connection.username")
            .or_else(|| raw.get("connection.user"))
            .map(|u| url_part(u.trim()))
            .unwrap_or_default();
        let password = raw
            .get("connection.password")
            .map(|p| format!(":{}", url_part(p)))
            .unwrap_or_default();
        let auth = if user.is_empty() {
            String::new()
        } else {
            format!("{user}{password}@")
        };
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        return Ok(format!("postgres://{auth}{hostport}/{db}{query}"));
    }
    if let Some(path) = url.strip_prefix("jdbc:sqlite:") {
        let path = path.split('?').next().unwrap_or("");
        if path.is_empty() || path == ":memory:" {
            return Err(bad(
                "a SQLite sink needs a file (jdbc:sqlite:/path/to/file.db)",
            ));
        }
        let p = std::path::Path::new(path);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| bad(&e.to_string()))?
                .join(p)
        };
        return Ok(format!("sqlite://{}?mode=rwc", abs.display()));
    }
    Err(bad(&format!(
        "{url:?} is not a supported JDBC URL (jdbc:postgresql://host:port/db or jdbc:sqlite:/path)"
    )))
}

/// Connector names as Kafka Connect allows them: not empty, no control characters, and
/// nothing a URL path would mangle.
pub fn check_name(name: &str) -> Result<(), ConnectError> {
    if name.trim().is_empty() {
        return Err(ConnectError::BadConfig(
            "name: connector name is empty".into(),
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ConnectError::BadConfig(format!(
            "name: connector name {name:?} contains a control character or '/'"
        )));
    }
    Ok(())
}

/// `host_dir:host_dir` for the directory of a file (or the directory itself), so the plugin
/// sees the same absolute path the config names.
fn auto_grant(key: &str, v: &str) -> Result<String, ConnectError> {
    let p = Path::new(v.trim());
    if !p.is_absolute() {
        return Err(ConnectError::BadConfig(format!(
            "{key}: {v:?} must be an absolute path"
        )));
    }
    let dir = if key == "directory" {
        p
    } else {
        p.parent().unwrap_or(Path::new("/"))
    };
    let dir = dir.display().to_string();
    if dir.contains([',', ':']) {
        return Err(ConnectError::BadConfig(format!(
            "{key}: {v:?}: a directory with ',' or ':' in its name cannot be granted; grant it with weir.dirs"
        )));
    }
    if !Path::new(&dir).is_dir() {
        return Err(ConnectError::BadConfig(format!(
            "{key}: directory {dir} does not exist"
        )));
    }
    Ok(format!("{dir}:{dir}"))
}

/// Settings of the runtime itself (`[connect]` in weir.toml).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where connector configs and target states are kept (compacted).
    pub config_topic: String,
    /// Where source offsets are kept (compacted).
    pub offset_topic: String,
    /// Where connector and task statuses are kept (compacted).
    pub status_topic: String,
    /// How often source offsets are stored and sink offsets committed.
    pub offset_flush_interval: Duration,
    /// Most records a source poll or a sink put carries.
    pub batch_records: u32,
    /// Reported as `worker_id` in statuses.
    pub worker_id: String,
    /// How a failed task is restarted (none: it stays FAILED until restarted by hand).
    pub restart: Option<Backoff>,
    /// `${provider:...}` references in connector configs are resolved with these.
    pub providers: crate::Providers,
    /// Relative `file`/`directory` paths are resolved against this directory (the worker's
    /// working directory, as Kafka Connect's are), so a Kafka quickstart config with
    /// `file=test.txt` runs unchanged. `None`: they are refused.
    pub work_dir: Option<std::path::PathBuf>,
    /// How often a running (or paused) sink's topic partitions are checked again: a topic
    /// created that matches its `topics.regex`, or partitions added to one of its topics,
    /// restart its tasks with the new assignment (as a Kafka consumer's metadata refresh and
    /// rebalance would). Zero: never checked again.
    pub topic_refresh_interval: Duration,
}

/// Exponential backoff between automatic restarts of a failed task.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            config_topic: "connect-configs".into(),
            offset_topic: "connect-offsets".into(),
            status_topic: "connect-status".into(),
            offset_flush_interval: Duration::from_secs(10),
            batch_records: 2000,
            worker_id: "127.0.0.1:8083".into(),
            restart: Some(Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            }),
            providers: crate::Providers::default(),
            work_dir: None,
            topic_refresh_interval: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> ConfigMap {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_runtime_and_plugin_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.txt").display().to_string();
        let c = ConnectorConfig::parse(
            "s",
            &map(&[
                ("connector.class", "FileStreamSource"),
                ("tasks.max", "2"),
                ("file", &file),
                ("topic", "t"),
                ("errors.tolerance", "none"),
                (
                    "value.converter",
                    "org.apache.kafka.connect.storage.StringConverter",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.tasks_max, 2);
        let pk = c.plugin_keys();
        let keys: Vec<&str> = pk.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["file", "topic"]);
        let d = dir.path().display().to_string();
        assert_eq!(c.task.dirs.len(), 1);
        assert_eq!(c.task.dirs[0].guest, d);
    }

    #[test]
    fn debezium_postgres_keys_become_the_sql_grant() {
        let url = auto_sql_grant(&map(&[
            ("database.hostname", "db.local"),
            ("database.port", "6543"),
            ("database.user", "cdc"),
            ("database.password", "p@ss:w/rd"),
            ("database.dbname", "shop"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            url,
            "postgres://cdc:p%40ss%3Aw%2Frd@db.local:6543/shop?sslmode=prefer"
        );
        let e = auto_sql_grant(&map(&[("database.hostname", "h"), ("database.user", "u")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.dbname"), "{e}");
    }

    #[test]
    fn jdbc_urls_become_the_sql_grant() {
        let url = auto_sql_grant(&map(&[
            (
                "connection.url",
                "jdbc:postgresql://db:5433/shop?sslmode=require",
            ),
            ("connection.username", "sink"),
            ("connection.password", "s3cret!"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            url,
            "postgres://sink:s3cret%21@db:5433/shop?sslmode=require"
        );
        let url = auto_sql_grant(&map(&[("connection.url", "jdbc:sqlite:/tmp/replica.db")]))
            .unwrap()
            .unwrap();
        assert_eq!(url, "sqlite:///tmp/replica.db?mode=rwc");
        let e = auto_sql_grant(&map(&[("connection.url", "jdbc:mysql://h/d")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("connection.url"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = |kv: &[(&str, &str)]| {
            ConnectorConfig::parse("c", &map(kv))
                .unwrap_err()
                .to_string()
        };
        assert!(e(&[]).contains("connector.class"));
        assert!(e(&[("connector.class", "x"), ("tasks.max", "0")]).contains("tasks.max"));
        assert!(e(&[("connector.class", "x"), ("topics.regex", "(")]).contains("topics.regex"));
        for (k, v) in [("topics", "a,orders-dlq"), ("topics.regex", "orders.*")] {
            let dlq = e(&[
                ("connector.class", "x"),
                (k, v),
                ("errors.deadletterqueue.topic.name", "orders-dlq"),
            ]);
            assert!(
                dlq.starts_with("errors.deadletterqueue.topic.name"),
                "{dlq}"
            );
        }
        assert!(e(&[("connector.class", "x"), ("file", "rel/path")]).contains("absolute"));
        assert!(e(&[("connector.class", "x"), ("name", "other")]).contains("name"));
        assert!(
            e(&[
                ("connector.class", "x"),
                ("value.converter", "org.example.AvroConverter")
            ])
            .contains("value.converter")
        );
        assert!(
            e(&[
                ("connector.class", "x"),
                (
                    "value.converter",
                    "org.apache.kafka.connect.json.JsonConverter"
                ),
                ("value.converter.schemas.enable", "maybe")
            ])
            .contains("value.converter.schemas.enable")
        );
        assert!(
            e(&[("connector.class", "x"), ("weir.value.format", "xml")])
                .contains("weir.value.format")
        );
        assert!(e(&[("connector.class", "x"), ("weir.bogus", "1")]).contains("weir.bogus"));
    }
}
