//! The plugin registry: which component a `connector.class` names.
//!
//! First-party connectors are compiled into the binary. Others live in the plugins directory as
//! `<name>/<version>.wasm` (as `weir plugin install` writes them); `connector.class` is a
//! plugin name, optionally `name@version` (the newest version otherwise).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weir_host::types::PluginKind;
use weir_host::{Host, Plugin};

use crate::ConnectError;

/// A first-party connector shipped in the binary.
struct Builtin {
    name: &'static str,
    /// Kafka Connect class names that mean this connector.
    aliases: &'static [&'static str],
    wasm: &'static [u8],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "file-source",
        aliases: &[
            "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "FileStreamSourceConnector",
            "FileStreamSource",
        ],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_FILE_SOURCE")),
    },
    Builtin {
        name: "file-sink",
        aliases: &[
            "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "FileStreamSinkConnector",
            "FileStreamSink",
        ],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_FILE_SINK")),
    },
    Builtin {
        name: "datagen",
        aliases: &["datagen"],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_DATAGEN")),
    },
    Builtin {
        name: "null-sink",
        aliases: &["null-sink"],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_NULL_SINK")),
    },
    Builtin {
        name: "sqlite-source",
        aliases: &[
            "io.weir.connector.sqlite.SqliteConnector",
            "SqliteConnector",
        ],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_SQLITE_SOURCE")),
    },
    Builtin {
        name: "postgres-source",
        aliases: &[
            "io.debezium.connector.postgresql.PostgresConnector",
            "PostgresConnector",
        ],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_POSTGRES_SOURCE")),
    },
    Builtin {
        name: "sql-sink",
        aliases: &[
            "io.debezium.connector.jdbc.JdbcSinkConnector",
            "JdbcSinkConnector",
        ],
        wasm: include_bytes!(env!("WEIR_CONNECTOR_SQL_SINK")),
    },
];

/// Source or sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Sink => "sink",
        }
    }
}

/// A loaded connector plugin.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The registry's name for it (a built-in's name, or `name@version`).
    pub name: String,
    pub plugin: Plugin,
    pub kind: Kind,
    pub version: String,
    /// What the plugin says about itself and its keys.
    pub descriptor: weir_host::types::Descriptor,
}

/// One entry of `GET /connector-plugins`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub class: String,
    /// `source`, `sink`, `transformation` or `predicate`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Finds and loads connector plugins (compiled once, then shared).
#[derive(Debug)]
pub struct Registry {
    host: Arc<Host>,
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Resolved>>,
}

impl Registry {
    pub fn new(host: Arc<Host>, dir: Option<PathBuf>) -> Registry {
        Registry {
            host,
            dir,
            loaded: Mutex::default(),
        }
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Loads the plugin a `connector.class` names.
    pub fn resolve(&self, class: &str) -> Result<Resolved, ConnectError> {
        let class = class.trim();
        let (bytes, name) = if let Some(b) = BUILTINS
            .iter()
            .find(|b| b.name == class || b.aliases.contains(&class))
        {
            if let Some(r) = self.cached(b.name) {
                return Ok(r);
            }
            (b.wasm.to_vec(), b.name.to_string())
        } else {
            let path = self.find_file(class)?;
            let key = path.display().to_string();
            if let Some(r) = self.cached(&key) {
                return Ok(r);
            }
            let bytes = std::fs::read(&path).map_err(|e| {
                ConnectError::BadConfig(format!(
                    "connector.class: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            (bytes, key)
        };
        let plugin = self
            .host
            .load_bytes(&short_name(class), &bytes)
            .map_err(|e| ConnectError::BadConfig(format!("connector.class: {e}")))?;
        let kind = match plugin.kind(&self.host) {
            Some(PluginKind::Source) => Kind::Source,
            Some(PluginKind::Sink) => Kind::Sink,
            _ => {
                return Err(ConnectError::BadConfig(format!(
                    "connector.class: {class} is not a source or sink connector"
                )));
            }
        };
        let descriptor = plugin
            .describe(&self.host)
            .map_err(|e| ConnectError::BadConfig(format!("connector.class: {e}")))?;
        let r = Resolved {
            name: name.clone(),
            plugin,
            kind,
            version: descriptor.version.clone(),
            descriptor,
        };
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(name, r.clone());
        }
        Ok(r)
    }

    /// Loads the WebAssembly transform a `transforms.<name>.type` names (from the plugins
    /// directory).
    pub fn resolve_transform(&self, class: &str) -> Result<Plugin, ConnectError> {
        let path = self.find_file(class.trim()).map_err(|_| {
            ConnectError::BadConfig(format!(
                "{class:?} is neither one of Kafka's transforms nor a transform plugin installed in the plugins directory"
            ))
        })?;
        let bytes = std::fs::read(&path)
            .map_err(|e| ConnectError::BadConfig(format!("cannot read {}: {e}", path.display())))?;
        let plugin = self
            .host
            .load_bytes(&short_name(class), &bytes)
            .map_err(|e| ConnectError::BadConfig(e.to_string()))?;
        match plugin.kind(&self.host) {
            Some(PluginKind::Transform) => Ok(plugin),
            _ => Err(ConnectError::BadConfig(format!(
                "plugin {class} is not a transform"
            ))),
        }
    }

    fn cached(&self, key: &str) -> Option<Resolved> {
        self.loaded.lock().ok()?.get(key).cloned()
    }

    /// `<dir>/<name>/<version>.wasm`: the given version, or the newest.
    fn find_file(&self, class: &str) -> Result<PathBuf, ConnectError> {
        let unknown = || {
            let mut known: Vec<String> = BUILTINS
                .iter()
                .flat_map(|b| b.aliases.iter().map(|a| a.to_string()))
                .collect();
            known.extend(self.installed().into_iter().map(|(n, _)| n));
            ConnectError::BadConfig(format!(
                "connector.class: no connector plugin named {class:?} (known: {})",
                known.join(", ")
            ))
        };
        let (name, version) = match class.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (class, None),
        };
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(unknown());
        }
        let Some(dir) = &self.dir else {
            return Err(unknown());
        };
        let pdir = dir.join(name);
        match version {
            Some(v) if !v.contains(['/', '\\']) => {
                let p = pdir.join(format!("{v}.wasm"));
                if p.is_file() { Ok(p) } else { Err(unknown()) }
            }
            Some(_) => Err(unknown()),
            None => newest(&pdir).ok_or_else(unknown),
        }
    }

    /// Installed plugins: (name, newest version).
    fn installed(&self) -> Vec<(String, String)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let v = newest(&e.path())?;
                Some((name, v.file_stem()?.to_string_lossy().to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// Every connector plugin: the built-ins under their Kafka class names, then the plugins
    /// directory's (those that load as a source or sink); with `connectors_only` false, the
    /// transforms and predicates too.
    pub fn plugins(&self, connectors_only: bool) -> Vec<PluginInfo> {
        let mut out = Vec::new();
        for b in BUILTINS {
            if let Ok(r) = self.resolve(b.name) {
                out.push(PluginInfo {
                    class: b.aliases[0].to_string(),
                    kind: r.kind.as_str().into(),
                    version: Some(r.version.clone()),
                });
            }
        }
        for (name, _) in self.installed() {
            match self.resolve(&name) {
                Ok(r) => out.push(PluginInfo {
                    class: name,
                    kind: r.kind.as_str().into(),
                    version: Some(r.version),
                }),
                Err(_) if !connectors_only => {
                    if let Ok(p) = self.resolve_transform(&name) {
                        out.push(PluginInfo {
                            class: name,
                            kind: "transformation".into(),
                            version: p.describe(&self.host).ok().map(|d| d.version),
                        });
                    }
                }
                Err(e) => tracing::debug!(plugin = %name, error = %e, "not a connector plugin"),
            }
        }
        if !connectors_only {
            for (class, kind) in crate::transforms::native_classes() {
                out.push(PluginInfo {
                    class,
                    kind: kind.into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                });
            }
        }
        out
    }
}

/// The newest `<version>.wasm` in a plugin's directory (by numeric version components).
fn newest(dir: &Path) -> Option<PathBuf> {
    let key = |p: &PathBuf| -> Vec<u64> {
        p.file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .split(['.', '-'])
                    .map(|x| x.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .max_by_key(key)
}

/// A plugin's name for logs: the last dotted part of a class name, without a version.
fn short_name(class: &str) -> String {
    let c = class.split('@').next().unwrap_or(class);
    c.rsplit('.').next().unwrap_or(c).to_string()
}
