//! The transform world: a batch in, what became of it out.

use crate::bindings::transform::Transform;
use crate::task::Runner;
use crate::{Host, HostError, Plugin, TaskConfig, types};

pub use types::Output;

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
    /// grants and limits, checks `config` (descriptor, then the plugin's `validate`) and
    /// opens it.
    pub fn transform(
        &self,
        host: &Host,
        config: &[(String, String)],
        tc: &TaskConfig,
    ) -> Result<TransformTask, HostError> {
        let mut task = TransformTask::instantiate(self, host, tc)?;
        task.config = config.to_vec();
        task.runner.check_config(
            config,
            |b, s| b.weir_connector_transformer().call_describe(s),
            |b, s| {
                b.weir_connector_transformer()
                    .call_validate(s, &config.to_vec())
            },
        )?;
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

    /// Runs one batch (a buffer in the batch layout, built by the caller) through the
    /// transform. The output is checked before it is returned: `select` indexes exist in the
    /// input, a `replace` batch is valid. Between batches the instance may be recycled (a
    /// transform holds nothing between calls but what it keeps in host state).
    // `&Vec`: the generated binding lowers a `&Vec<u8>`; taking the caller's own buffer saves
    // copying the whole batch first.
    #[allow(clippy::ptr_arg)]
    pub fn apply(&mut self, input: &Vec<u8>) -> Result<Output, HostError> {
        if self.runner.wants_recycle() {
            let config = &self.config;
            self.runner.recycle(|r| {
                r.reinstantiate()?;
                open(r, config)
            })?;
        }
        let r = self.runner.call("apply", |b, s| {
            b.weir_connector_transformer().call_apply(s, input)
        })?;
        let out = self.runner.plugin_result("apply", r)?;
        match &out {
            Output::Passthrough => {}
            Output::Select(indexes) => {
                let n = weir_batch::record_count(input).unwrap_or(0);
                if let Some(bad) = indexes.iter().find(|&&i| i >= n) {
                    return Err(HostError::BadBatch {
                        plugin: self.runner.settings.plugin.clone(),
                        function: "apply".into(),
                        message: format!("select names record {bad}, but the input has {n}"),
                    });
                }
            }
            Output::Replace(bytes) => {
                self.runner.batch("apply", bytes)?;
            }
        }
        Ok(out)
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

/// The batch an output stands for, given the input it came from.
pub fn output_batch(input: &[u8], output: Output) -> Result<Vec<u8>, weir_batch::BatchError> {
    match output {
        Output::Passthrough => Ok(input.to_vec()),
        Output::Select(indexes) => weir_batch::select(&weir_batch::Batch::parse(input)?, &indexes),
        Output::Replace(bytes) => Ok(bytes),
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
