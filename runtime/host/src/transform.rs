//! The transform world: a batch in, a batch out.

use crate::task::Runner;
use crate::task::bindings::Transform;
use crate::{Host, HostError, Plugin, TaskConfig, types};

/// A running transform task.
pub struct TransformTask {
    runner: Runner<Transform>,
    config: Vec<(String, String)>,
}

impl std::fmt::Debug for TransformTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformTask")
            .field("plugin", &self.runner.settings.plugin)
            .field("poisoned", &self.runner.is_poisoned())
            .finish()
    }
}

impl Plugin {
    /// Starts a transform task: checks the world and version, instantiates with the task's
    /// grants and limits, and calls `open` with the plugin's `config`.
    pub fn transform(
        &self,
        host: &Host,
        config: &[(String, String)],
        tc: &TaskConfig,
    ) -> Result<TransformTask, HostError> {
        let mut task = TransformTask::instantiate(self, host, tc)?;
        task.config = config.to_vec();
        task.open()?;
        Ok(task)
    }
}

impl TransformTask {
    pub(crate) fn instantiate(
        plugin: &Plugin,
        host: &Host,
        tc: &TaskConfig,
    ) -> Result<TransformTask, HostError> {
        Ok(TransformTask {
            runner: Runner::start(plugin, host, tc)?,
            config: Vec::new(),
        })
    }

    fn open(&mut self) -> Result<(), HostError> {
        open(&mut self.runner, &self.config)
    }

    /// The plugin's descriptor.
    pub fn describe(&mut self) -> Result<types::Descriptor, HostError> {
        self.runner.call("describe", |b, s| {
            b.weir_connector_transformer().call_describe(s)
        })
    }

    /// Runs one batch through the transform. Between batches the instance may be recycled
    /// (a transform holds nothing between calls but what it keeps in host state).
    pub fn apply(&mut self, batch: &[types::Record]) -> Result<Vec<types::Record>, HostError> {
        if self.runner.wants_recycle() {
            let config = &self.config;
            self.runner.recycle(|r| {
                r.reinstantiate()?;
                open(r, config)
            })?;
        }
        let r = self.runner.call("apply", |b, s| {
            b.weir_connector_transformer().call_apply(s, batch)
        })?;
        self.runner.plugin_result("apply", r)
    }

    /// Whether an earlier call trapped.
    pub fn is_poisoned(&self) -> bool {
        self.runner.is_poisoned()
    }

    /// How many times the instance was replaced by the recycling policy.
    pub fn recycled(&self) -> u64 {
        self.runner.recycled
    }

    /// Linear memory the current instance holds, in bytes.
    pub fn memory_used(&self) -> usize {
        self.runner.memory_used()
    }
}

// The generated bindings take the config as `&Vec`.
#[allow(clippy::ptr_arg)]
fn open(runner: &mut Runner<Transform>, config: &Vec<(String, String)>) -> Result<(), HostError> {
    let r = runner.call("open", |b, s| {
        b.weir_connector_transformer().call_open(s, config)
    })?;
    runner.plugin_result("open", r)
}
