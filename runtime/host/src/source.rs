//! The source world: opened with committed offsets, polled for batches, told what the log
//! stored.

use std::collections::BTreeMap;

use crate::bindings::source::SourceConnector;
use crate::task::Runner;
use crate::{Host, HostError, Plugin, TaskConfig, types};

/// Source partition -> source offset, as opaque bytes.
pub type Offsets = Vec<(Vec<u8>, Vec<u8>)>;

/// A running source task.
pub struct SourceTask {
    runner: Runner<SourceConnector>,
    config: Vec<(String, String)>,
    /// The offsets the log has stored (committed at open, then every ack): where a recycled
    /// instance resumes.
    stored: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The last offset polled per source partition.
    polled: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every polled record was acked while the policy asked for recycling: the next poll
    /// starts on a fresh instance.
    recycle_due: bool,
}

impl std::fmt::Debug for SourceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTask")
            .field("plugin", &self.runner.settings.plugin)
            .field("poisoned", &self.runner.is_poisoned())
            .finish()
    }
}

impl Plugin {
    /// Starts a source task: checks `config` (descriptor, then the plugin's `validate`) and
    /// opens it with the offsets last committed for each source partition.
    pub fn source(
        &self,
        host: &Host,
        config: &[(String, String)],
        committed: &Offsets,
        tc: &TaskConfig,
    ) -> Result<SourceTask, HostError> {
        let mut task = SourceTask::instantiate(self, host, tc)?;
        task.config = config.to_vec();
        task.stored = committed.iter().cloned().collect();
        task.runner.check_config(
            config,
            |b, s| b.weir_connector_source().call_describe(s),
            |b, s| b.weir_connector_source().call_validate(s, &config.to_vec()),
        )?;
        task.open()?;
        Ok(task)
    }
}

impl SourceTask {
    pub(crate) fn instantiate(
        plugin: &Plugin,
        host: &Host,
        tc: &TaskConfig,
    ) -> Result<SourceTask, HostError> {
        Ok(SourceTask {
            runner: Runner::start(plugin, host, tc)?,
            config: Vec::new(),
            stored: BTreeMap::new(),
            polled: BTreeMap::new(),
            recycle_due: false,
        })
    }

    fn open(&mut self) -> Result<(), HostError> {
        let committed = self.committed();
        open(&mut self.runner, &self.config, &committed)
    }

    fn committed(&self) -> Offsets {
        self.stored
            .iter()
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect()
    }

    /// The task's open change streams (their slots and retained log), readable while the
    /// task runs elsewhere.
    pub fn stream_stats(&self) -> crate::StreamStats {
        self.runner.settings.streams.clone()
    }

    /// The plugin's descriptor.
    pub fn describe(&mut self) -> Result<types::Descriptor, HostError> {
        self.runner.call("describe", |b, s| {
            b.weir_connector_source().call_describe(s)
        })
    }

    /// The plugin's own checks of a configuration (`validate`), one `key: why` each.
    pub fn validate(&mut self, config: &[(String, String)]) -> Result<Vec<String>, HostError> {
        let errors = self.runner.call("validate", |b, s| {
            b.weir_connector_source().call_validate(s, &config.to_vec())
        })?;
        Ok(errors
            .into_iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect())
    }

    /// Splits the connector's configuration into at most `max_tasks` task configurations.
    pub fn task_configs(
        &mut self,
        config: &[(String, String)],
        max_tasks: u32,
    ) -> Result<Vec<Vec<(String, String)>>, HostError> {
        let r = self.runner.call("task-configs", |b, s| {
            b.weir_connector_source()
                .call_task_configs(s, &config.to_vec(), max_tasks)
        })?;
        self.runner.plugin_result("task-configs", r)
    }

    /// Polls at most `max` records (an empty batch: nothing now). The batch is validated; the
    /// records' source offsets are remembered, for recycling.
    pub fn poll(&mut self, max: u32) -> Result<Vec<u8>, HostError> {
        if self.recycle_due {
            self.recycle_due = false;
            let (config, committed) = (&self.config, self.committed());
            self.runner.recycle(|r| {
                r.call("close", |b, s| b.weir_connector_source().call_close(s))?;
                r.reinstantiate()?;
                open(r, config, &committed)
            })?;
        }
        let r = self
            .runner
            .call("poll", |b, s| b.weir_connector_source().call_poll(s, max))?;
        let bytes = self.runner.plugin_result("poll", r)?;
        let batch = self.runner.batch("poll", &bytes)?;
        if batch.len() > max as usize {
            return Err(HostError::BadBatch {
                plugin: self.runner.settings.plugin.clone(),
                function: "poll".into(),
                message: format!(
                    "{} records, where at most {max} were asked for",
                    batch.len()
                ),
            });
        }
        for (p, o) in batch.last_source_offsets() {
            self.polled.insert(p.to_vec(), o.to_vec());
        }
        Ok(bytes)
    }

    /// Tells the plugin which source offsets the log has stored. When the recycling policy
    /// asks for it and every polled record is stored, the next `poll` runs on a fresh
    /// instance opened at the stored offsets, so nothing is read twice or skipped.
    pub fn ack(&mut self, stored: &Offsets) -> Result<(), HostError> {
        self.runner
            .call("ack", |b, s| b.weir_connector_source().call_ack(s, stored))?;
        for (p, o) in stored {
            self.stored.insert(p.clone(), o.clone());
        }
        let settled = self
            .polled
            .iter()
            .all(|(p, o)| self.stored.get(p) == Some(o));
        self.recycle_due = settled && self.runner.wants_recycle();
        Ok(())
    }

    /// Closes the source.
    pub fn close(&mut self) -> Result<(), HostError> {
        self.runner
            .call("close", |b, s| b.weir_connector_source().call_close(s))
    }

    /// Whether an earlier call trapped.
    pub fn is_poisoned(&self) -> bool {
        self.runner.is_poisoned()
    }

    /// How many times the instance was replaced by the recycling policy.
    pub fn recycled(&self) -> u64 {
        self.runner.recycled
    }
}

// The generated bindings take the config as `&Vec`.
#[allow(clippy::ptr_arg)]
fn open(
    runner: &mut Runner<SourceConnector>,
    config: &Vec<(String, String)>,
    committed: &Offsets,
) -> Result<(), HostError> {
    let r = runner.call("open", |b, s| {
        b.weir_connector_source().call_open(s, config, committed)
    })?;
    runner.plugin_result("open", r)
}
