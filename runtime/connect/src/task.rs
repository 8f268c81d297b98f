//! What every task thread shares with the runtime: its control flags, its state, and the
//! context it runs in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_cluster::Cluster;
use weir_host::{Host, Plugin, TaskConfig};

use crate::WorkerConfig;
use crate::status::{State, TaskStatus};
use crate::store::TopicStore;

/// The runtime's side of a running task.
#[derive(Debug)]
pub(crate) struct Control {
    pub id: u32,
    stop: AtomicBool,
    paused: AtomicBool,
    state: Mutex<(State, Option<String>)>,
}

impl Control {
    pub fn new(id: u32, paused: bool) -> Arc<Control> {
        Arc::new(Control {
            id,
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
        })
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

    pub fn status(&self, worker_id: &str) -> TaskStatus {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        TaskStatus {
            id: self.id,
            state: s.0,
            worker_id: worker_id.to_string(),
            trace: s.1.clone(),
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
