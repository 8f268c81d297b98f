//! What every task thread shares with the runtime: its control flags, its state, and the
//! context it runs in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_cluster::Cluster;
use weir_host::{Host, Plugin, TaskConfig};

use crate::WorkerConfig;
use crate::errors::{Counters, Failure, Reporter};
use crate::status::{State, TaskStatus};
use crate::store::TopicStore;

/// The runtime's side of a running task.
#[derive(Debug)]
pub(crate) struct Control {
    pub id: u32,
    pub counters: Arc<Counters>,
    /// Topics the task wrote to (sources).
    topics: Mutex<std::collections::BTreeSet<String>>,
    stop: AtomicBool,
    paused: AtomicBool,
    state: Mutex<(State, Option<String>)>,
    /// The task's change streams (replication slots), when it opened any.
    streams: Mutex<Option<weir_host::StreamStats>>,
}

impl Control {
    pub fn new(id: u32, paused: bool) -> Arc<Control> {
        Arc::new(Control {
            id,
            counters: Arc::default(),
            topics: Mutex::default(),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(paused),
            state: Mutex::new((
                if paused {
                    State::Paused
                } else {
                    State::Running
                },
                None,
            )),
            streams: Mutex::default(),
        })
    }

    /// Where the status reads the task's replication slots from.
    pub fn set_streams(&self, stats: weir_host::StreamStats) {
        *self.streams.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 != State::Failed {
            *s = (
                if paused {
                    State::Paused
                } else {
                    State::Running
                },
                None,
            );
        }
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn fail(&self, trace: String) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (State::Failed, Some(trace));
    }

    pub fn used_topic(&self, t: &str) {
        let mut s = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if !s.contains(t) {
            s.insert(t.to_string());
        }
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn reset_topics(&self) {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Back from FAILED after an automatic restart.
    pub fn restarted(&self) {
        let paused = self.paused();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (
            if paused {
                State::Paused
            } else {
                State::Running
            },
            None,
        );
    }

    pub fn status(&self, worker_id: &str) -> TaskStatus {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (errors_tolerated, dead_lettered, restarts) = self.counters.get();
        let replication_slots = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|st| {
                st.slots()
                    .into_iter()
                    .map(|s| crate::status::SlotStatus {
                        slot_name: s.slot,
                        retained_wal_bytes: s.retained_bytes,
                    })
                    .collect()
            })
            .unwrap_or_default();
        TaskStatus {
            replication_slots,
            id: self.id,
            state: s.0,
            worker_id: worker_id.to_string(),
            trace: s.1.clone(),
            restarts,
            errors_tolerated,
            dead_lettered,
        }
    }
}

/// Everything a task thread needs.
#[derive(Debug, Clone)]
pub(crate) struct TaskCtx {
    pub rt: tokio::runtime::Handle,
    pub cluster: Arc<dyn Cluster>,
    pub host: Arc<Host>,
    pub plugin: Plugin,
    pub connector: String,
    /// The task's plugin config (from `task-configs`).
    pub config: Vec<(String, String)>,
    pub grants: TaskConfig,
    pub control: Arc<Control>,
    pub worker: WorkerConfig,
    pub status: TopicStore,
    pub pipe: Arc<crate::pipe::Pipe>,
    pub reporter: Reporter,
}

impl TaskCtx {
    /// The task's name in logs and for the host: `<connector>-<id>`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.connector, self.control.id)
    }

    /// Marks the task FAILED, in memory and in the status topic.
    pub fn fail(&self, trace: String) {
        tracing::error!(error = %trace, "task failed");
        self.control.fail(trace);
        self.publish();
    }

    /// Writes the task's current status to the status topic.
    pub fn publish(&self) {
        let st = self.control.status(&self.worker.worker_id);
        let key = format!("status-task-{}-{}", self.connector, self.control.id);
        let value = serde_json::to_vec(&st).unwrap_or_default();
        if let Err(e) = self
            .rt
            .block_on(self.status.put(&[(key.into_bytes(), Some(value))]))
        {
            tracing::warn!(error = %e, "cannot store the task status");
        }
    }

    /// Runs the task until it stops; a retriable failure restarts it after a backoff that
    /// doubles up to the maximum (and starts over once a run lasted longer than that), a fatal
    /// one leaves it FAILED with its reason.
    pub fn supervise(&self, mut run: impl FnMut(&TaskCtx) -> Result<(), Failure>) {
        let mut delay = self.worker.restart.map(|b| b.initial);
        loop {
            let started = std::time::Instant::now();
            let failure = match run(self) {
                Ok(()) => return,
                Err(f) => f,
            };
            let (Some(b), false, false) =
                (self.worker.restart, failure.fatal, self.control.stopping())
            else {
                self.fail(failure.message);
                return;
            };
            let mut d = delay.unwrap_or(b.initial);
            if started.elapsed() > b.max {
                d = b.initial;
            }
            let n = self.control.counters.restarts.load(Ordering::Relaxed) + 1;
            self.fail(format!(
                "{}\n(restart {n} in {} ms)",
                failure.message,
                d.as_millis()
            ));
            self.nap(d);
            if self.control.stopping() {
                return;
            }
            self.control
                .counters
                .restarts
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(restart = n, "restarting the task");
            self.control.restarted();
            self.publish();
            delay = Some((d * 2).min(b.max));
        }
    }

    /// Sleeps up to `d`, waking early when the task is asked to stop.
    pub fn nap(&self, d: Duration) {
        let step = Duration::from_millis(20);
        let mut left = d;
        while !left.is_zero() && !self.control.stopping() {
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
    }
}
