//! The transform world: one `Store` and instance per task, bounded in memory and time.

use std::collections::HashMap;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{Host, HostError, Plugin};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "transform",
        additional_derives: [PartialEq],
    });
}

use bindings::weir::connector::{log, state};

/// A transform's imports, resolved once per plugin.
pub(crate) type Pre = bindings::TransformPre<TaskState>;

/// The WIT types, as Rust values.
pub mod types {
    pub use super::bindings::weir::connector::types::*;
}

/// Name of the interface a transform exports.
pub const TRANSFORMER: &str = "weir:connector/transformer@0.1.0";

/// Largest value a plugin may keep in its state.
const MAX_STATE_VALUE: usize = 1 << 20;

pub(crate) struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: String,
    kv: HashMap<String, Vec<u8>>,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for TaskState {}

impl log::Host for TaskState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl state::Host for TaskState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.kv.get(&key).cloned()
    }
    fn set(&mut self, key: String, value: Vec<u8>) {
        if value.len() > MAX_STATE_VALUE {
            tracing::warn!(plugin = %self.plugin, key, size = value.len(), "state value over 1 MiB refused");
            return;
        }
        self.kv.insert(key, value);
    }
    fn delete(&mut self, key: String) {
        self.kv.remove(&key);
    }
}

/// A running transform task.
pub struct TransformTask {
    store: Store<TaskState>,
    bindings: bindings::Transform,
    plugin: String,
    deadline_ticks: u64,
    poisoned: bool,
}

impl std::fmt::Debug for TransformTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformTask")
            .field("plugin", &self.plugin)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Plugin {
    /// The plugin's descriptor, from a throwaway instance (no `open`).
    pub fn describe(&self, host: &Host) -> Result<types::Descriptor, HostError> {
        self.instantiate(host)?.describe()
    }

    /// Starts a transform task: checks the world, instantiates with the task's limits, and
    /// calls `open` with `config`.
    pub fn transform(
        &self,
        host: &Host,
        config: &[(String, String)],
    ) -> Result<TransformTask, HostError> {
        let mut task = self.instantiate(host)?;
        let cfg = config.to_vec();
        task.call("open", |b, s| {
            b.weir_connector_transformer().call_open(s, &cfg)
        })?
        .map_err(|error| HostError::Plugin {
            plugin: task.plugin.clone(),
            function: "open".into(),
            error,
        })?;
        Ok(task)
    }

    fn instantiate(&self, host: &Host) -> Result<TransformTask, HostError> {
        let exports = self.exports(host);
        if !exports.iter().any(|e| e == TRANSFORMER) {
            return Err(HostError::WrongWorld {
                plugin: self.name.clone(),
                interface: TRANSFORMER.into(),
                exports: exports.join(", "),
            });
        }
        let pre = match self.transform_pre.get() {
            Some(pre) => pre.clone(),
            None => {
                let mut linker: Linker<TaskState> = Linker::new(&host.engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                    .map_err(|e| HostError::Internal(format!("{e:#}")))?;
                bindings::Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
                    .map_err(|e| HostError::Internal(format!("{e:#}")))?;
                let pre = linker
                    .instantiate_pre(&self.component)
                    .and_then(bindings::TransformPre::new)
                    .map_err(|e| HostError::Invalid {
                        plugin: self.name.clone(),
                        message: format!("cannot link: {e:#}"),
                    })?;
                let _ = self.transform_pre.set(pre.clone());
                pre
            }
        };
        let state = TaskState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(host.cfg.memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            plugin: self.name.clone(),
            kv: HashMap::new(),
        };
        let mut store = Store::new(&host.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(host.deadline_ticks());
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| HostError::Invalid {
                plugin: self.name.clone(),
                message: format!("cannot instantiate: {e:#}"),
            })?;
        Ok(TransformTask {
            store,
            bindings,
            plugin: self.name.clone(),
            deadline_ticks: host.deadline_ticks(),
            poisoned: false,
        })
    }
}

impl TransformTask {
    fn call<R>(
        &mut self,
        function: &str,
        f: impl FnOnce(&bindings::Transform, &mut Store<TaskState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostError> {
        if self.poisoned {
            return Err(HostError::Poisoned {
                plugin: self.plugin.clone(),
            });
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        match f(&self.bindings, &mut self.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                // After a trap the instance's state is unknown: this task is done.
                self.poisoned = true;
                let message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => {
                        "ran past its call deadline (interrupted)".to_string()
                    }
                    _ => format!("{e:#}"),
                };
                tracing::error!(plugin = %self.plugin, function, error = %message, "plugin trapped; task failed");
                Err(HostError::Trap {
                    plugin: self.plugin.clone(),
                    function: function.to_string(),
                    message,
                })
            }
        }
    }

    /// The plugin's descriptor.
    pub fn describe(&mut self) -> Result<types::Descriptor, HostError> {
        self.call("describe", |b, s| {
            b.weir_connector_transformer().call_describe(s)
        })
    }

    /// Runs one batch through the transform.
    pub fn apply(&mut self, batch: &[types::Record]) -> Result<Vec<types::Record>, HostError> {
        let out = self.call("apply", |b, s| {
            b.weir_connector_transformer().call_apply(s, batch)
        })?;
        out.map_err(|error| HostError::Plugin {
            plugin: self.plugin.clone(),
            function: "apply".into(),
            error,
        })
    }

    /// Whether an earlier call trapped.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}
