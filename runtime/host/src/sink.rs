//! The sink world: batches in, `flush` up to positions the runtime then commits.

use std::collections::BTreeMap;

use crate::task::Runner;
use crate::task::sink_bindings::SinkConnector;
use crate::{Host, HostError, Plugin, TaskConfig, types};

/// A running sink task.
pub struct SinkTask {
    runner: Runner<SinkConnector>,
    config: Vec<(String, String)>,
    /// The highest offset put, per topic and partition.
    put: BTreeMap<(String, i32), i64>,
    /// The highest offset flushed, per topic and partition.
    flushed: BTreeMap<(String, i32), i64>,
    /// Everything put was flushed while the policy asked for recycling: the next `put` starts
    /// on a fresh instance.
    recycle_due: bool,
}

impl std::fmt::Debug for SinkTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTask")
            .field("plugin", &self.runner.settings.plugin)
            .field("poisoned", &self.runner.is_poisoned())
            .finish()
    }
}

impl Plugin {
    /// Starts a sink task and opens it with the plugin's `config`.
    pub fn sink(
        &self,
        host: &Host,
        config: &[(String, String)],
        tc: &TaskConfig,
    ) -> Result<SinkTask, HostError> {
        let mut task = SinkTask::instantiate(self, host, tc)?;
        task.config = config.to_vec();
        task.open()?;
        Ok(task)
    }
}

impl SinkTask {
    pub(crate) fn instantiate(
        plugin: &Plugin,
        host: &Host,
        tc: &TaskConfig,
    ) -> Result<SinkTask, HostError> {
        Ok(SinkTask {
            runner: Runner::start(plugin, host, tc)?,
            config: Vec::new(),
            put: BTreeMap::new(),
            flushed: BTreeMap::new(),
            recycle_due: false,
        })
    }

    fn open(&mut self) -> Result<(), HostError> {
        open(&mut self.runner, &self.config)
    }

    /// The plugin's descriptor.
    pub fn describe(&mut self) -> Result<types::Descriptor, HostError> {
        self.runner
            .call("describe", |b, s| b.weir_connector_sink().call_describe(s))
    }

    /// Hands the plugin one batch.
    pub fn put(&mut self, batch: &[types::Record]) -> Result<(), HostError> {
        if self.recycle_due {
            self.recycle_due = false;
            let config = &self.config;
            self.runner.recycle(|r| {
                r.call("close", |b, s| b.weir_connector_sink().call_close(s))?;
                r.reinstantiate()?;
                open(r, config)
            })?;
        }
        let r = self
            .runner
            .call("put", |b, s| b.weir_connector_sink().call_put(s, batch))?;
        self.runner.plugin_result("put", r)?;
        for p in batch.iter().filter_map(|r| r.position.as_ref()) {
            let e = self
                .put
                .entry((p.topic.clone(), p.partition))
                .or_insert(p.offset);
            *e = (*e).max(p.offset);
        }
        Ok(())
    }

    /// Asks the plugin to make everything up to `up_to` durable. When the recycling policy
    /// asks for it and everything put is flushed, the next `put` runs on a fresh instance.
    pub fn flush(&mut self, up_to: &[types::LogPosition]) -> Result<(), HostError> {
        let r = self
            .runner
            .call("flush", |b, s| b.weir_connector_sink().call_flush(s, up_to))?;
        self.runner.plugin_result("flush", r)?;
        for p in up_to {
            let e = self
                .flushed
                .entry((p.topic.clone(), p.partition))
                .or_insert(p.offset);
            *e = (*e).max(p.offset);
        }
        let settled = self
            .put
            .iter()
            .all(|(k, o)| self.flushed.get(k).is_some_and(|f| f >= o));
        self.recycle_due = settled && self.runner.wants_recycle();
        Ok(())
    }

    /// Closes the sink.
    pub fn close(&mut self) -> Result<(), HostError> {
        self.runner
            .call("close", |b, s| b.weir_connector_sink().call_close(s))
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

fn open(
    runner: &mut Runner<SinkConnector>,
    config: &Vec<(String, String)>,
) -> Result<(), HostError> {
    let r = runner.call("open", |b, s| b.weir_connector_sink().call_open(s, config))?;
    runner.plugin_result("open", r)
}
