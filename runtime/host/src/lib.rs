//! `weir-host`: the plugin host. The only crate that depends on wasmtime.
//!
//! One [`Host`] owns the shared wasmtime `Engine` (epoch interruption on, component-model
//! async off) and an on-disk cache of compiled components keyed by content hash and engine
//! compatibility hash, so a restart does not recompile. [`Host::load`] checks that a component
//! exports the world it claims; each task gets its own `Store` with a memory cap
//! (`StoreLimits`) and a per-call CPU deadline (epochs). A trap, a deadline overrun or an
//! out-of-memory fails that task with an error naming the plugin, the function and the trap;
//! the process and every other task go on.
//!
//! Today the transform world runs end to end ([`TransformTask`]); the source and sink worlds
//! are defined in `wit/` and run through the same machinery next.

mod cache;
mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

pub use transform::{TransformTask, types};

/// Host settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached (none: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Linear memory a task may grow to, in bytes.
    pub memory_limit: usize,
    /// Longest a single call into a plugin may run.
    pub call_deadline: Duration,
}

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
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("plugin {plugin} is not a valid component: {message}")]
    Invalid { plugin: String, message: String },
    #[error("plugin {plugin} does not export {interface} (it exports: {exports})")]
    WrongWorld {
        plugin: String,
        interface: String,
        exports: String,
    },
    #[error("plugin {plugin} failed in {function}: {message}")]
    Trap {
        plugin: String,
        function: String,
        message: String,
    },
    #[error("plugin {plugin} returned an error from {function}: {error:?}")]
    Plugin {
        plugin: String,
        function: String,
        error: types::Error,
    },
    #[error("plugin {plugin} task has failed before and must be restarted")]
    Poisoned { plugin: String },
    #[error("host error: {0}")]
    Internal(String),
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
}

impl Host {
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
            transform_pre: Arc::default(),
        })
    }

    /// Loads a component file.
    pub fn load(&self, path: &std::path::Path) -> Result<Plugin, HostError> {
        let bytes = std::fs::read(path).map_err(|source| HostError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        self.load_bytes(&name, &bytes)
    }

    fn deadline_ticks(&self) -> u64 {
        (self.cfg.call_deadline.as_millis() as u64 * TICKS_PER_SECOND / 1000).max(1)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled plugin. Cloning is cheap; clones share the prepared instance.
#[derive(Clone)]
pub struct Plugin {
    pub name: String,
    component: Component,
    /// Imports resolved once per plugin (`InstancePre`); each task only instantiates.
    transform_pre: Arc<std::sync::OnceLock<transform::Pre>>,
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
}
