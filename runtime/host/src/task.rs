//! What every task shares, whatever its world: the store's data (WASI context and one context
//! per capability, see `caps`), the memory limiter, and [`Runner`], which makes calls under a
//! deadline inside the task's tracing span, poisons the task on a trap and can replace the
//! instance (recycling) while keeping the task's state and watcher.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::caps::http::HttpCtx;
use crate::caps::log::LogCtx;
use crate::caps::sql::SqlCtx;
use crate::caps::state::StateCtx;
use crate::caps::watch::WatchCtx;
use crate::caps::{self, TaskConfig};
use crate::stdio::LogStream;
use crate::{Host, HostError, Plugin, Pres, TICKS_PER_SECOND};

use crate::bindings::weir::connector::types;

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

/// What a task was started with, shared by the runner and the store's state.
pub(crate) struct Settings {
    pub(crate) plugin: String,
    sql: Option<Arc<dyn crate::sql::SqlBackend>>,
    pub(crate) grants: TaskConfig,
    memory_limit: usize,
    deadline: Duration,
    /// The task's change streams, as the host reports them.
    pub(crate) streams: crate::caps::sql::StreamStats,
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
    /// One context per capability (`caps::*`); `state` and `watch` survive recycling.
    log: LogCtx,
    state: StateCtx,
    http: HttpCtx,
    watch: WatchCtx,
    sql: SqlCtx,
    /// The plugin's stderr (also in the log), to explain a trap.
    stderr: LogStream,
    /// When the current call's deadline passes (wall clock), for the clamped clock.
    call_ends: std::time::Instant,
    /// A wait of the current call was cut at its deadline.
    wait_cut: bool,
}

/// `wasi:clocks/monotonic-clock` with every subscription (a sleep, a poll timeout) clamped to
/// what is left of the call's deadline: a plugin that sleeps for an hour wakes at its
/// deadline and is interrupted there, instead of holding its thread (epochs only interrupt
/// wasm code, never a host call).
struct BoundedClocks<'a> {
    inner: wasmtime_wasi::clocks::WasiClocksCtxView<'a>,
    left_ns: u64,
    /// Set when a wait was cut at the deadline: the call has overrun it, whatever it returns.
    cut: &'a mut bool,
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
        if duration > self.left_ns {
            *self.cut = true;
        }
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
    let TaskState {
        wasi,
        table,
        wait_cut,
        ..
    } = t;
    BoundedClocks {
        inner: wasmtime_wasi::clocks::WasiClocksCtxView {
            ctx: wasi.clocks(),
            table,
        },
        left_ns: u64::try_from(left).unwrap_or(u64::MAX),
        cut: wait_cut,
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
                link_capabilities(linker)?;
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

/// The contract's imports, one capability module each (see `caps`).
fn link_capabilities(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    types::add_to_linker::<TaskState, HasSelf<TaskState>>(linker, |t| t)?;
    caps::log::add_to_linker(linker, |t: &mut TaskState| &mut t.log)?;
    caps::state::add_to_linker(linker, |t: &mut TaskState| &mut t.state)?;
    caps::http::add_to_linker(linker, |t: &mut TaskState| &mut t.http)?;
    caps::watch::add_to_linker(linker, |t: &mut TaskState| &mut t.watch)?;
    caps::sql::add_to_linker(linker, |t: &mut TaskState| &mut t.sql)?;
    Ok(())
}

use crate::bindings::sink::SinkConnectorPre;
use crate::bindings::source::SourceConnectorPre;
use crate::bindings::transform::TransformPre;

world!(
    crate::bindings::transform::Transform,
    TransformPre,
    crate::TRANSFORMER,
    transform
);
world!(
    crate::bindings::source::SourceConnector,
    SourceConnectorPre,
    crate::SOURCE,
    source
);
world!(
    crate::bindings::sink::SinkConnector,
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
            sql: host.sql.clone(),
            grants: tc.clone(),
            memory_limit: tc.memory_limit.unwrap_or(host.cfg.memory_limit),
            deadline: tc.call_deadline.unwrap_or(host.cfg.call_deadline),
            streams: Default::default(),
        });
        let (store, bindings) = instantiate::<W>(&host.engine, &pre, &settings)?;
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
        // Everything the call logs (the plugin's own lines, its stdout and stderr, HTTP and
        // watch) is inside the task's span.
        let span = tracing::info_span!(
            "plugin",
            plugin = %self.settings.plugin,
            task = %self.settings.grants.task,
            function
        );
        let _entered = span.enter();
        self.store
            .set_epoch_deadline(self.settings.deadline_ticks());
        self.store.data().stderr.clear_tail();
        let ends = std::time::Instant::now() + self.settings.deadline;
        self.store.data_mut().call_ends = ends;
        self.store.data_mut().sql.call_ends = ends;
        self.store.data_mut().wait_cut = false;
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
        // A plugin whose sleep or poll was cut at the deadline overran it, even if it then
        // returned before the epoch interrupt caught it.
        let outcome = match outcome {
            Ok(_) if self.store.data().wait_cut => {
                Err(wasmtime::Error::from(wasmtime::Trap::Interrupt))
            }
            other => other,
        };
        match outcome {
            Ok(r) => Ok(r),
            Err(e) => {
                // After a trap the instance's state is unknown: this task is done.
                self.poisoned = true;
                // The message says what happened and goes back to the caller, which reports it;
                // the wasm backtrace goes to the debug log.
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
                tracing::debug!(%plugin, %task, function, detail = %format!("{e:#}"), "plugin trapped; wasm backtrace");
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
        let (mut store, bindings) = instantiate::<W>(&self.engine, &self.pre, &self.settings)?;
        // Only now that the new instance exists do the task's state and watcher move over.
        let (old, new) = (self.store.data_mut(), store.data_mut());
        std::mem::swap(&mut old.state, &mut new.state);
        std::mem::swap(&mut old.watch, &mut new.watch);
        self.store = store;
        self.bindings = bindings;
        // The old instance's streams ended with it.
        self.settings.streams.clear();
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
) -> Result<(Store<TaskState>, W), HostError> {
    let (plugin, grants) = (settings.plugin.as_str(), &settings.grants);
    let mut wasi = WasiCtx::builder();
    let stderr = LogStream::new("stderr");
    wasi.stdout(LogStream::new("stdout"));
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
        log: LogCtx,
        state: StateCtx::default(),
        http: HttpCtx::new(plugin, &grants.http_allow, settings.http_timeout()),
        watch: WatchCtx::new(plugin, &grants.dirs),
        sql: SqlCtx::new(
            plugin,
            settings.sql.clone(),
            &grants.sql.0,
            settings.deadline,
            settings.streams.clone(),
        ),
        stderr,
        call_ends: std::time::Instant::now(),
        wait_cut: false,
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
