//! What every task shares, whatever its world: the store's state (WASI context, granted
//! capabilities, the host side of `log`, `state`, `http` and `watch`), the memory limiter,
//! and [`Runner`], which makes calls under a deadline, poisons the task on a trap and can
//! replace the instance (recycling) while keeping the task's state.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::caps::{self, TaskConfig, Watch};
use crate::stdio::LogStream;
use crate::{Host, HostError, Plugin, Pres, TICKS_PER_SECOND};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "transform",
        additional_derives: [PartialEq],
    });
}

pub(crate) mod source_bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "source-connector",
        with: {
            "weir:connector/types": super::bindings::weir::connector::types,
            "weir:connector/log": super::bindings::weir::connector::log,
            "weir:connector/state": super::bindings::weir::connector::state,
            "weir:connector/http": super::bindings::weir::connector::http,
            "weir:connector/watch": super::bindings::weir::connector::watch,
        },
    });
}

pub(crate) mod sink_bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sink-connector",
        with: {
            "weir:connector/types": super::bindings::weir::connector::types,
            "weir:connector/log": super::bindings::weir::connector::log,
            "weir:connector/state": super::bindings::weir::connector::state,
            "weir:connector/http": super::bindings::weir::connector::http,
            "weir:connector/watch": super::bindings::weir::connector::watch,
        },
    });
}

use bindings::weir::connector::{http, log, state, types, watch};

/// Bounds of a task's state (see `wit/host.wit`).
const MAX_STATE_KEY: usize = 1 << 10;
const MAX_STATE_VALUE: usize = 1 << 20;
const MAX_STATE_BYTES: usize = 64 << 20;
const MAX_STATE_KEYS: usize = 100_000;

/// Caps a task's linear memory; the trap message says so when a plugin goes past it.
pub(crate) struct Limits {
    cap: usize,
    /// Bytes of linear memory across the instance's memories.
    pub(crate) used: usize,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current) + desired;
        if next > self.cap {
            wasmtime::bail!(
                "memory limit exceeded: the plugin asked for {next} bytes of linear memory, the task's limit is {} bytes (weir.memory.limit.bytes)",
                self.cap
            );
        }
        self.used = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// What survives recycling: the task's key/value state and its watcher.
#[derive(Default)]
struct Carry {
    kv: HashMap<String, Vec<u8>>,
    /// Bytes of keys and values in `kv`.
    kv_bytes: usize,
    watch: Option<Watch>,
}

/// What a task was started with, shared by the runner and the store's state.
pub(crate) struct Settings {
    pub(crate) plugin: String,
    pub(crate) grants: TaskConfig,
    memory_limit: usize,
    deadline: Duration,
}

impl Settings {
    fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() as u64)
            .saturating_mul(TICKS_PER_SECOND)
            .checked_div(1000)
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// An HTTP call must return before the call deadline would interrupt the plugin.
    fn http_timeout(&self) -> Duration {
        self.deadline.mul_f64(0.8).max(Duration::from_millis(50))
    }
}

pub(crate) struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Limits,
    settings: Arc<Settings>,
    /// The task's HTTP client, made on first use.
    http: Option<caps::HttpClient>,
    carry: Carry,
    /// The plugin's stderr (also in the log), to explain a trap.
    stderr: LogStream,
    /// When the current call's deadline passes (wall clock), for the clamped clock.
    call_ends: std::time::Instant,
}

/// `wasi:clocks/monotonic-clock` with every subscription (a sleep, a poll timeout) clamped to
/// what is left of the call's deadline: a plugin that sleeps for an hour wakes at its
/// deadline and is interrupted there, instead of holding its thread (epochs only interrupt
/// wasm code, never a host call).
struct BoundedClocks<'a> {
    inner: wasmtime_wasi::clocks::WasiClocksCtxView<'a>,
    left_ns: u64,
}

struct HasBoundedClocks;

impl wasmtime::component::HasData for HasBoundedClocks {
    type Data<'a> = BoundedClocks<'a>;
}

use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

impl monotonic_clock::Host for BoundedClocks<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.inner.now()
    }
    fn resolution(&mut self) -> wasmtime::Result<u64> {
        self.inner.resolution()
    }
    fn subscribe_instant(
        &mut self,
        when: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        let now = self.inner.now()?;
        self.subscribe_duration(when.saturating_sub(now))
    }
    fn subscribe_duration(
        &mut self,
        duration: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        self.inner.subscribe_duration(duration.min(self.left_ns))
    }
}

fn bounded_clocks(t: &mut TaskState) -> BoundedClocks<'_> {
    // A little past the deadline, so the epoch interrupt is what ends the call.
    let left = t
        .call_ends
        .saturating_duration_since(std::time::Instant::now())
        .as_nanos()
        .saturating_add(20_000_000);
    BoundedClocks {
        inner: wasmtime_wasi::clocks::WasiClocksView::clocks(t),
        left_ns: u64::try_from(left).unwrap_or(u64::MAX),
    }
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
        let (plugin, task) = (
            self.settings.plugin.as_str(),
            self.settings.grants.task.as_str(),
        );
        match level {
            log::Level::Trace => tracing::trace!(plugin, task, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, task, "{message}"),
            log::Level::Info => tracing::info!(plugin, task, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, task, "{message}"),
            log::Level::Error => tracing::error!(plugin, task, "{message}"),
        }
    }
}

impl state::Host for TaskState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.carry.kv.get(&key).cloned()
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.len() > MAX_STATE_KEY {
            return Err(format!("state key of {} bytes is over 1 KiB", key.len()));
        }
        if value.len() > MAX_STATE_VALUE {
            return Err(format!(
                "state value of {} bytes is over 1 MiB",
                value.len()
            ));
        }
        let kv = &mut self.carry;
        let old = kv.kv.get(&key).map_or(0, |v| key.len() + v.len());
        let total = kv.kv_bytes - old + key.len() + value.len();
        if total > MAX_STATE_BYTES {
            return Err(format!(
                "task state would hold {total} bytes, over its 64 MiB limit"
            ));
        }
        if old == 0 && !kv.kv.contains_key(&key) && kv.kv.len() >= MAX_STATE_KEYS {
            return Err(format!("task state is full ({MAX_STATE_KEYS} keys)"));
        }
        kv.kv_bytes = total;
        kv.kv.insert(key, value);
        Ok(())
    }
    fn delete(&mut self, key: String) {
        if let Some(v) = self.carry.kv.remove(&key) {
            self.carry.kv_bytes -= key.len() + v.len();
        }
    }
}

impl http::Host for TaskState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let (method, url) = (request.method.clone(), request.url.clone());
        let settings = &self.settings;
        let client = self
            .http
            .get_or_insert_with(|| caps::HttpClient::new(settings.http_timeout()));
        let result = client.send(&settings.grants.http_allow, request);
        let plugin = &settings.plugin;
        match &result {
            Ok(r) => {
                tracing::debug!(%plugin, %method, %url, status = r.status, "plugin http request")
            }
            Err(e) => {
                tracing::warn!(%plugin, %method, %url, error = ?e, "plugin http request failed")
            }
        }
        result
    }
}

impl watch::Host for TaskState {
    fn watch(&mut self, path: String, recursive: bool) -> Result<(), String> {
        let grants = &self.settings.grants;
        let host = caps::guest_to_host(&grants.dirs, &path)?;
        if self.carry.watch.is_none() {
            self.carry.watch = Some(Watch::new(&grants.dirs, &self.settings.plugin)?);
        }
        self.carry
            .watch
            .as_mut()
            .expect("created above")
            .add(&host, recursive)
    }

    fn events(&mut self, max: u32) -> Vec<watch::Event> {
        self.carry
            .watch
            .as_ref()
            .map(|w| w.drain(max))
            .unwrap_or_default()
    }
}

/// One world's generated bindings, as the runner needs them.
pub(crate) trait World: Sized + 'static {
    type Pre: Clone + Send + Sync + 'static;
    /// The interface the component must export.
    const INTERFACE: &'static str;
    fn slot(pres: &Pres) -> &OnceLock<Self::Pre>;
    fn link(linker: &mut Linker<TaskState>, component: &Component) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<TaskState>) -> wasmtime::Result<Self>;
}

/// Implements [`World`] for one world's generated bindings (the three differ only in names).
macro_rules! world {
    ($bindings:ty, $pre:ident, $interface:expr, $slot:ident) => {
        impl World for $bindings {
            type Pre = $pre<TaskState>;
            const INTERFACE: &'static str = $interface;
            fn slot(pres: &Pres) -> &OnceLock<Self::Pre> {
                &pres.$slot
            }
            fn link(
                linker: &mut Linker<TaskState>,
                component: &Component,
            ) -> wasmtime::Result<Self::Pre> {
                Self::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
                $pre::new(linker.instantiate_pre(component)?)
            }
            fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<TaskState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }
        }
    };
}

use bindings::TransformPre;
use sink_bindings::SinkConnectorPre;
use source_bindings::SourceConnectorPre;

world!(
    bindings::Transform,
    TransformPre,
    crate::TRANSFORMER,
    transform
);
world!(
    source_bindings::SourceConnector,
    SourceConnectorPre,
    crate::SOURCE,
    source
);
world!(
    sink_bindings::SinkConnector,
    SinkConnectorPre,
    crate::SINK,
    sink
);

/// A task's instance of one world: calls under a deadline, poisoning on a trap, recycling.
pub(crate) struct Runner<W: World> {
    pub(crate) settings: Arc<Settings>,
    engine: Engine,
    pre: W::Pre,
    store: Store<TaskState>,
    bindings: W,
    poisoned: bool,
    /// Work calls (not open/close/describe) since this instance was created.
    calls: u64,
    /// How many times the instance was replaced.
    pub(crate) recycled: u64,
}

impl<W: World> Runner<W> {
    pub(crate) fn start(
        plugin: &Plugin,
        host: &Host,
        tc: &TaskConfig,
    ) -> Result<Runner<W>, HostError> {
        plugin.check_world(host, W::INTERFACE)?;
        let pre = match W::slot(&plugin.pre).get() {
            Some(pre) => pre.clone(),
            None => {
                let mut linker: Linker<TaskState> = Linker::new(&host.engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                    .and_then(|()| {
                        linker.allow_shadowing(true);
                        monotonic_clock::add_to_linker::<TaskState, HasBoundedClocks>(
                            &mut linker,
                            bounded_clocks,
                        )?;
                        linker.allow_shadowing(false);
                        Ok(())
                    })
                    .map_err(|e| HostError::Internal(format!("{e:#}")))?;
                let pre =
                    W::link(&mut linker, &plugin.component).map_err(|e| HostError::Invalid {
                        plugin: plugin.name.clone(),
                        message: format!("cannot link: {e:#}"),
                    })?;
                let _ = W::slot(&plugin.pre).set(pre.clone());
                pre
            }
        };
        let settings = Arc::new(Settings {
            plugin: plugin.name.clone(),
            grants: tc.clone(),
            memory_limit: tc.memory_limit.unwrap_or(host.cfg.memory_limit),
            deadline: tc.call_deadline.unwrap_or(host.cfg.call_deadline),
        });
        let (store, bindings) = instantiate::<W>(&host.engine, &pre, &settings, Carry::default())?;
        Ok(Runner {
            settings,
            engine: host.engine.clone(),
            pre,
            store,
            bindings,
            poisoned: false,
            calls: 0,
            recycled: 0,
        })
    }

    pub(crate) fn call<R>(
        &mut self,
        function: &str,
        f: impl FnOnce(&W, &mut Store<TaskState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostError> {
        if self.poisoned {
            return Err(HostError::Poisoned {
                plugin: self.settings.plugin.clone(),
            });
        }
        // The recycling count is of calls that do the work, not of open/close/describe.
        if !matches!(
            function,
            "open" | "close" | "describe" | "validate" | "task-configs"
        ) {
            self.calls += 1;
        }
        self.store
            .set_epoch_deadline(self.settings.deadline_ticks());
        self.store.data().stderr.clear_tail();
        self.store.data_mut().call_ends = std::time::Instant::now() + self.settings.deadline;
        // WASI's synchronous bindings block on a runtime of their own: inside a tokio worker
        // thread that would panic, so step out of the async context first. A current-thread
        // runtime cannot be stepped out of: callers there must use `spawn_blocking`.
        let outcome = match tokio::runtime::Handle::try_current() {
            Err(_) => f(&self.bindings, &mut self.store),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| f(&self.bindings, &mut self.store))
            }
            Ok(_) => {
                return Err(HostError::Internal(format!(
                    "plugin {} called from a current-thread async runtime; call it from a blocking thread (spawn_blocking)",
                    self.settings.plugin
                )));
            }
        };
        match outcome {
            Ok(r) => Ok(r),
            Err(e) => {
                // After a trap the instance's state is unknown: this task is done.
                self.poisoned = true;
                // The message says what happened; the wasm backtrace goes to the log.
                let mut message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => format!(
                        "ran past its call deadline of {} ms and was interrupted (the deadline is weir.call.deadline.ms)",
                        self.settings.deadline.as_millis()
                    ),
                    Some(trap) => trap.to_string(),
                    None => e.root_cause().to_string(),
                };
                // What the plugin printed just before (a panic message, a Python traceback).
                let tail = self.store.data().stderr.tail();
                if !tail.is_empty() {
                    message.push_str("; the plugin's stderr ended with: ");
                    message.push_str(&tail.join(" | "));
                }
                let (plugin, task) = (&self.settings.plugin, &self.settings.grants.task);
                tracing::error!(%plugin, %task, function, error = %message, detail = %format!("{e:#}"), "plugin trapped; task failed");
                Err(HostError::Trap {
                    plugin: plugin.clone(),
                    function: function.to_string(),
                    message,
                })
            }
        }
    }

    /// Checks a task's configuration before `open`: against the descriptor (required keys,
    /// unknown keys, types), then with the plugin's own `validate`.
    pub(crate) fn check_config(
        &mut self,
        config: &[(String, String)],
        describe: impl FnOnce(&W, &mut Store<TaskState>) -> wasmtime::Result<types::Descriptor>,
        validate: impl FnOnce(&W, &mut Store<TaskState>) -> wasmtime::Result<Vec<types::ConfigError>>,
    ) -> Result<(), HostError> {
        let descriptor = self.call("describe", describe)?;
        let mut problems = crate::config::check_config(&descriptor, config);
        if problems.is_empty() {
            let errors = self.call("validate", validate)?;
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| format!("{}: {}", e.key, e.message)),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HostError::BadConfig {
                plugin: self.settings.plugin.clone(),
                problems,
            })
        }
    }

    /// A buffer the plugin returned from `function`, validated as a batch.
    pub(crate) fn batch<'b>(
        &self,
        function: &str,
        bytes: &'b [u8],
    ) -> Result<weir_batch::Batch<'b>, HostError> {
        weir_batch::Batch::parse(bytes).map_err(|e| HostError::BadBatch {
            plugin: self.settings.plugin.clone(),
            function: function.into(),
            message: e.0,
        })
    }

    /// Turns a plugin's `result` error into a [`HostError`].
    pub(crate) fn plugin_result<R>(
        &self,
        function: &str,
        r: Result<R, types::Error>,
    ) -> Result<R, HostError> {
        r.map_err(|error| HostError::Plugin {
            plugin: self.settings.plugin.clone(),
            function: function.into(),
            error,
        })
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the task failed (its instance is in an unknown or unopened state).
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Runs `steps` (close, [`Runner::reinstantiate`], open); if any fails the task is
    /// failed, never left running on an unopened instance.
    pub(crate) fn recycle(
        &mut self,
        steps: impl FnOnce(&mut Self) -> Result<(), HostError>,
    ) -> Result<(), HostError> {
        let result = steps(self);
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Linear memory the current instance holds, in bytes.
    pub(crate) fn memory_used(&self) -> usize {
        self.store.data().limits.used
    }

    /// Whether the task's recycling policy says the instance should be replaced.
    pub(crate) fn wants_recycle(&self) -> bool {
        !self.poisoned
            && (self
                .settings
                .grants
                .recycle_after_calls
                .is_some_and(|n| self.calls >= n)
                || self
                    .settings
                    .grants
                    .recycle_above_memory
                    .is_some_and(|m| self.memory_used() > m))
    }

    /// Replaces the instance with a fresh one; the task's state and watcher carry over. The
    /// caller opens the new instance.
    pub(crate) fn reinstantiate(&mut self) -> Result<(), HostError> {
        let before = self.memory_used();
        let (mut store, bindings) =
            instantiate::<W>(&self.engine, &self.pre, &self.settings, Carry::default())?;
        // Only now that the new instance exists does the state move over.
        store.data_mut().carry = std::mem::take(&mut self.store.data_mut().carry);
        self.store = store;
        self.bindings = bindings;
        self.calls = 0;
        self.recycled += 1;
        let (plugin, task) = (&self.settings.plugin, &self.settings.grants.task);
        tracing::info!(%plugin, %task, memory_before = before, recycled = self.recycled, "plugin instance recycled");
        Ok(())
    }
}

fn instantiate<W: World>(
    engine: &Engine,
    pre: &W::Pre,
    settings: &Arc<Settings>,
    carry: Carry,
) -> Result<(Store<TaskState>, W), HostError> {
    let (plugin, grants) = (settings.plugin.as_str(), &settings.grants);
    let mut wasi = WasiCtx::builder();
    let stderr = LogStream::new(plugin, &grants.task, "stderr");
    wasi.stdout(LogStream::new(plugin, &grants.task, "stdout"));
    wasi.stderr(stderr.clone());
    for d in &grants.dirs {
        let perms = if d.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(&d.host, &d.guest, perms)
            .map_err(|e| HostError::Config(format!("cannot grant {}: {e:#}", d.host.display())))?;
    }
    let state = TaskState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: Limits {
            cap: settings.memory_limit,
            used: 0,
        },
        settings: settings.clone(),
        http: None,
        carry,
        stderr,
        call_ends: std::time::Instant::now(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(settings.deadline_ticks());
    let bindings = W::instantiate(pre, &mut store).map_err(|e| HostError::Instantiate {
        plugin: plugin.to_string(),
        message: format!("{e:#}"),
    })?;
    Ok((store, bindings))
}
