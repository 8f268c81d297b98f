//! `weir-host`: the plugin host. The only crate that depends on wasmtime.
//!
//! One [`Host`] owns the shared wasmtime `Engine` (epoch interruption on, component-model
//! async off) and an on-disk cache of compiled components keyed by content hash and engine
//! compatibility hash, so a restart does not recompile. [`Host::load`] compiles (or loads) a
//! component; starting a task checks that the component exports the world asked for, at this
//! host's contract version. Each task gets its own `Store` with a memory cap and a per-call CPU
//! deadline (epochs), and only the capabilities its [`TaskConfig`] grants: preopened
//! directories, a watch on them, outgoing HTTP to allow-listed hosts. A trap, a deadline
//! overrun or an out-of-memory fails that task with an error naming the plugin, the function
//! and the trap; the process and every other task go on. Tasks can recycle their instance
//! after N calls or above a memory threshold, at points where no work is in flight.
//!
//! The three worlds: [`TransformTask`], [`SourceTask`], [`SinkTask`]. Records cross in batch
//! buffers (`wit/BATCH.md`, [`weir_batch`]); every buffer a plugin returns is validated before
//! a byte of it is used, and a malformed one fails the call with the field named. A task's
//! configuration is checked against the plugin's descriptor (required keys, unknown keys,
//! types) and the plugin's own `validate` before `open`.

mod bindings;
mod cache;
mod caps;
mod config;
mod sink;
mod source;
pub mod sql;
mod stdio;
mod task;
mod transform;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

pub use caps::sql::{SlotStat, StreamStats};
pub use caps::{DirGrant, SqlGrants, TaskConfig, sql_grant_name};
pub use config::check_config;
pub use sink::SinkTask;
pub use source::SourceTask;
pub use transform::{Output, TransformTask, output_batch};
pub use weir_batch;

/// The WIT types, as Rust values.
pub mod types {
    pub use crate::bindings::weir::connector::types::*;
}

/// The contract version this host implements (`weir:connector@...`).
pub const CONTRACT_VERSION: &str = "0.2.2";
/// The interface a transform exports (at any 0.2.x this host supports).
pub const TRANSFORMER: &str = "weir:connector/transformer";
/// The interface a source exports.
pub const SOURCE: &str = "weir:connector/source";
/// The interface a sink exports.
pub const SINK: &str = "weir:connector/sink";

/// Whether the export `name` is `interface` at a contract version this host supports.
fn is_export(name: &str, interface: &str) -> bool {
    name.strip_prefix(interface)
        .and_then(|rest| rest.strip_prefix('@'))
        .is_some_and(version_supported)
}

/// Whether this host can run a component built against contract `version`: any 0.2.x up to
/// its own (additive changes only within a minor version; see `wit/README.md`).
pub fn version_supported(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        let t = (it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(t)
    };
    match (parse(version), parse(CONTRACT_VERSION)) {
        (Some((a, b, c)), Some((x, y, z))) => a == x && b == y && c <= z,
        _ => false,
    }
}

/// Host settings: defaults for every task, which a [`TaskConfig`] may narrow or widen.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached (none: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Linear memory a task may grow to, in bytes.
    pub memory_limit: usize,
    /// Longest a single call into a plugin may run.
    pub call_deadline: Duration,
}

/// The most linear memory a task may be given: a wasm32 memory cannot grow past 4 GiB.
pub const MAX_MEMORY_LIMIT: usize = 4 << 30;

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            memory_limit: 64 << 20,
            call_deadline: Duration::from_secs(5),
        }
    }
}

/// Why a plugin could not be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read plugin {path}: {error}")]
    Read {
        path: String,
        /// Not the error's `source`: its text is in the message already, and a chain would
        /// print it twice.
        error: std::io::Error,
    },
    #[error("plugin {plugin} is not a valid component: {message}")]
    Invalid { plugin: String, message: String },
    #[error("plugin {plugin} does not export {interface} (it exports: {exports})")]
    WrongWorld {
        plugin: String,
        interface: String,
        exports: String,
    },
    #[error(
        "plugin {plugin} was built against weir:connector@{found}; this host implements weir:connector@{CONTRACT_VERSION} ({item})"
    )]
    VersionMismatch {
        plugin: String,
        found: String,
        item: String,
    },
    #[error("plugin {plugin} could not be instantiated: {message}")]
    Instantiate { plugin: String, message: String },
    #[error("plugin {plugin} failed in {function}: {message}")]
    Trap {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin {plugin} returned an error from {function}: {}", describe_error(.error))]
    Plugin {
        plugin: String,
        function: String,
        error: types::Error,
    },
    #[error("plugin {plugin} returned a malformed batch from {function}: {message}")]
    BadBatch {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin {plugin}: invalid config: {}", .problems.join("; "))]
    BadConfig {
        plugin: String,
        /// One line per problem: `key: why` (a secret's value is never in it).
        problems: Vec<String>,
    },
    #[error("plugin {plugin} task has failed before and must be restarted")]
    Poisoned { plugin: String },
    #[error("bad task configuration: {0}")]
    Config(String),
    #[error("host error: {0}")]
    Internal(String),
}

/// A plugin error in words.
pub fn describe_error(e: &types::Error) -> String {
    match e {
        types::Error::Retriable(m) => format!("retriable: {m}"),
        types::Error::Fatal(m) => format!("fatal: {m}"),
        types::Error::InvalidConfig(c) => format!("invalid config {}: {}", c.key, c.message),
        types::Error::BadRecord(b) => format!("bad record at index {}: {}", b.index, b.message),
    }
}

/// Epoch ticks per second: the deadline granularity.
const TICKS_PER_SECOND: u64 = 100;

/// The plugin host.
#[derive(Debug)]
pub struct Host {
    engine: Engine,
    cfg: HostConfig,
    compiled: AtomicU64,
    stop: Arc<AtomicBool>,
    /// The `sql` capability's databases (none: every grant is refused).
    sql: Option<Arc<dyn sql::SqlBackend>>,
}

impl Host {
    /// Gives tasks the `sql` capability through `backend` (the CLI injects `weir-sql`).
    pub fn with_sql_backend(mut self, backend: Arc<dyn sql::SqlBackend>) -> Host {
        self.sql = Some(backend);
        self
    }

    pub fn new(cfg: HostConfig) -> Result<Host, HostError> {
        let mut c = Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        let engine = Engine::new(&c).map_err(|e| HostError::Internal(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1000 / TICKS_PER_SECOND));
                    e.increment_epoch();
                }
            })
            .map_err(|e| HostError::Internal(e.to_string()))?;
        Ok(Host {
            engine,
            cfg,
            compiled: AtomicU64::new(0),
            stop,
            sql: None,
        })
    }

    /// How many components this host compiled (cache misses), for tests and metrics.
    pub fn compilations(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Loads a component from bytes, from the cache when possible.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, HostError> {
        let component = cache::load(self, name, bytes)?;
        Ok(Plugin {
            name: name.to_string(),
            component,
            pre: Arc::default(),
        })
    }

    /// Loads a component file.
    pub fn load(&self, path: &std::path::Path) -> Result<Plugin, HostError> {
        let bytes = std::fs::read(path).map_err(|error| HostError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        self.load_bytes(&name, &bytes)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Imports resolved once per plugin and world (`InstancePre`); each task only instantiates.
#[derive(Default)]
pub(crate) struct Pres {
    pub(crate) transform: OnceLock<bindings::transform::TransformPre<task::TaskState>>,
    pub(crate) source: OnceLock<bindings::source::SourceConnectorPre<task::TaskState>>,
    pub(crate) sink: OnceLock<bindings::sink::SinkConnectorPre<task::TaskState>>,
}

/// A compiled plugin. Cloning is cheap; clones share the prepared instances.
#[derive(Clone)]
pub struct Plugin {
    pub name: String,
    component: Component,
    pre: Arc<Pres>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The interfaces the component exports, by name.
    pub fn exports(&self, host: &Host) -> Vec<String> {
        self.component
            .component_type()
            .exports(&host.engine)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// The interfaces the component imports, by name.
    pub fn imports(&self, host: &Host) -> Vec<String> {
        self.component
            .component_type()
            .imports(&host.engine)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Which world the component implements, by the interface it exports.
    pub fn kind(&self, host: &Host) -> Option<types::PluginKind> {
        let exports = self.exports(host);
        let has = |i: &str| exports.iter().any(|e| is_export(e, i));
        if has(TRANSFORMER) {
            Some(types::PluginKind::Transform)
        } else if has(SOURCE) {
            Some(types::PluginKind::Source)
        } else if has(SINK) {
            Some(types::PluginKind::Sink)
        } else {
            None
        }
    }

    /// The plugin's descriptor, from a throwaway instance of whichever world it exports
    /// (nothing is granted, `open` is not called).
    pub fn describe(&self, host: &Host) -> Result<types::Descriptor, HostError> {
        self.check_versions(host)?;
        match self.kind(host) {
            Some(types::PluginKind::Source) => {
                SourceTask::instantiate(self, host, &TaskConfig::default())?.describe()
            }
            Some(types::PluginKind::Sink) => {
                SinkTask::instantiate(self, host, &TaskConfig::default())?.describe()
            }
            _ => TransformTask::instantiate(self, host, &TaskConfig::default())?.describe(),
        }
    }

    /// A connector plugin's own checks of `config` (its `validate`: values that depend on each
    /// other, values only it understands), one `key: why` each, on a throwaway instance
    /// granted nothing (`open` is not called).
    pub fn validate(
        &self,
        host: &Host,
        config: &[(String, String)],
    ) -> Result<Vec<String>, HostError> {
        self.check_versions(host)?;
        match self.kind(host) {
            Some(types::PluginKind::Source) => {
                SourceTask::instantiate(self, host, &TaskConfig::default())?.validate(config)
            }
            Some(types::PluginKind::Sink) => {
                SinkTask::instantiate(self, host, &TaskConfig::default())?.validate(config)
            }
            _ => Err(HostError::Config(format!(
                "plugin {} is a transform, not a connector",
                self.name
            ))),
        }
    }

    /// Splits a connector's configuration into at most `max_tasks` task configurations, on a
    /// throwaway instance granted what `tc` grants (`open` is not called).
    pub fn task_configs(
        &self,
        host: &Host,
        config: &[(String, String)],
        max_tasks: u32,
        tc: &TaskConfig,
    ) -> Result<Vec<Vec<(String, String)>>, HostError> {
        self.check_versions(host)?;
        match self.kind(host) {
            Some(types::PluginKind::Source) => {
                SourceTask::instantiate(self, host, tc)?.task_configs(config, max_tasks)
            }
            Some(types::PluginKind::Sink) => {
                SinkTask::instantiate(self, host, tc)?.task_configs(config, max_tasks)
            }
            _ => Err(HostError::Config(format!(
                "plugin {} is a transform, not a connector",
                self.name
            ))),
        }
    }

    /// Refuses a component built against a contract version this host cannot run (another
    /// minor version, or a newer 0.2.x), naming the version it was built against.
    pub fn check_versions(&self, host: &Host) -> Result<(), HostError> {
        let names = self.exports(host).into_iter().chain(self.imports(host));
        for name in names {
            if let Some(rest) = name.strip_prefix("weir:connector/")
                && let Some((_, version)) = rest.split_once('@')
                && !version_supported(version)
            {
                return Err(HostError::VersionMismatch {
                    plugin: self.name.clone(),
                    found: version.to_string(),
                    item: name,
                });
            }
        }
        Ok(())
    }

    /// Checks the component exports `interface` (at a version this host supports).
    pub(crate) fn check_world(&self, host: &Host, interface: &str) -> Result<(), HostError> {
        self.check_versions(host)?;
        let exports = self.exports(host);
        if !exports.iter().any(|e| is_export(e, interface)) {
            return Err(HostError::WrongWorld {
                plugin: self.name.clone(),
                interface: format!("{interface}@{CONTRACT_VERSION}"),
                exports: exports.join(", "),
            });
        }
        Ok(())
    }
}
