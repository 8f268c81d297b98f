//! The sink world: opened with the committed positions, fed batches, asked to flush; what it
//! says is durable is what the runtime commits.

use std::collections::BTreeMap;

use crate::bindings::sink::SinkConnector;
use crate::task::Runner;
use crate::{Host, HostError, Plugin, TaskConfig, types};

use types::LogPosition;

/// A running sink task.
pub struct SinkTask {
    runner: Runner<SinkConnector>,
    config: Vec<(String, String)>,
    /// Per topic partition: the last committed position at open, then the durable ones
    /// `flush` returned (where a recycled instance resumes).
    committed: BTreeMap<(String, i32), i64>,
    /// The highest offset put, per topic and partition.
    put: BTreeMap<(String, i32), i64>,
    /// Everything put was reported durable while the policy asked for recycling: the next
    /// `put` starts on a fresh instance.
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
    /// Starts a sink task: checks `config` (descriptor, then the plugin's `validate`) and
    /// opens it with the positions last committed per topic partition.
    pub fn sink(
        &self,
        host: &Host,
        config: &[(String, String)],
        committed: &[LogPosition],
        tc: &TaskConfig,
    ) -> Result<SinkTask, HostError> {
        let mut task = SinkTask::instantiate(self, host, tc)?;
        task.config = config.to_vec();
        for p in committed {
            task.committed
                .insert((p.topic.clone(), p.partition), p.offset);
        }
        task.runner.check_config(
            config,
            |b, s| b.weir_connector_sink().call_describe(s),
            |b, s| b.weir_connector_sink().call_validate(s, &config.to_vec()),
        )?;
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
            committed: BTreeMap::new(),
            put: BTreeMap::new(),
            recycle_due: false,
        })
    }

    fn positions(&self) -> Vec<LogPosition> {
        self.committed
            .iter()
            .map(|((topic, partition), offset)| LogPosition {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect()
    }

    fn open(&mut self) -> Result<(), HostError> {
        let committed = self.positions();
        open(&mut self.runner, &self.config, &committed)
    }

    /// The plugin's descriptor.
    pub fn describe(&mut self) -> Result<types::Descriptor, HostError> {
        self.runner
            .call("describe", |b, s| b.weir_connector_sink().call_describe(s))
    }

    /// The plugin's own checks of a configuration (`validate`), one `key: why` each.
    pub fn validate(&mut self, config: &[(String, String)]) -> Result<Vec<String>, HostError> {
        let errors = self.runner.call("validate", |b, s| {
            b.weir_connector_sink().call_validate(s, &config.to_vec())
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
            b.weir_connector_sink()
                .call_task_configs(s, &config.to_vec(), max_tasks)
        })?;
        self.runner.plugin_result("task-configs", r)
    }

    /// Hands the plugin one batch (a buffer in the batch layout, built by the caller; each
    /// record with its topic, partition and offset).
    // `&Vec`: the generated binding lowers a `&Vec<u8>` (see `TransformTask::apply`).
    #[allow(clippy::ptr_arg)]
    pub fn put(&mut self, input: &Vec<u8>) -> Result<(), HostError> {
        if self.recycle_due {
            self.recycle_due = false;
            self.runner.recycle(|r| {
                r.call("close", |b, s| b.weir_connector_sink().call_close(s))?;
                r.reinstantiate()?;
                Ok(())
            })?;
            self.open().inspect_err(|_| self.runner.poison())?;
        }
        let r = self
            .runner
            .call("put", |b, s| b.weir_connector_sink().call_put(s, input))?;
        self.runner.plugin_result("put", r)?;
        // The highest offset put per partition, found without allocating per record (a put
        // holds one or a few partitions); the bounds-checked reader is enough for bookkeeping.
        if let Ok(batch) = weir_batch::Batch::parse_trusted(input) {
            let mut max: Vec<(&str, i32, i64)> = Vec::new();
            for r in batch.iter() {
                if let (Some(p), Some(o)) = (r.partition(), r.offset()) {
                    let t = r.topic();
                    match max.iter_mut().rev().find(|(u, q, _)| *q == p && *u == t) {
                        Some(e) => e.2 = e.2.max(o),
                        None => max.push((t, p, o)),
                    }
                }
            }
            for (t, p, o) in max {
                let e = self.put.entry((t.to_string(), p)).or_insert(o);
                *e = (*e).max(o);
            }
        }
        Ok(())
    }

    /// Asks the plugin to make everything up to `up_to` durable, and returns the positions it
    /// says are durable: those the runtime may commit. A position it was not asked about, or
    /// past what was asked, is refused. When the recycling policy asks for it and everything
    /// put is durable, the next `put` runs on a fresh instance.
    pub fn flush(&mut self, up_to: &[LogPosition]) -> Result<Vec<LogPosition>, HostError> {
        let r = self
            .runner
            .call("flush", |b, s| b.weir_connector_sink().call_flush(s, up_to))?;
        let durable = self.runner.plugin_result("flush", r)?;
        for d in &durable {
            let asked = up_to
                .iter()
                .find(|a| a.topic == d.topic && a.partition == d.partition);
            match asked {
                Some(a) if d.offset <= a.offset => {}
                _ => {
                    return Err(HostError::BadBatch {
                        plugin: self.runner.settings.plugin.clone(),
                        function: "flush".into(),
                        message: format!(
                            "it reported {}/{}/{} durable, which is past what was asked{}",
                            d.topic,
                            d.partition,
                            d.offset,
                            asked.map_or(String::new(), |a| format!(" ({})", a.offset))
                        ),
                    });
                }
            }
            let e = self
                .committed
                .entry((d.topic.clone(), d.partition))
                .or_insert(d.offset);
            *e = (*e).max(d.offset);
        }
        let settled = self
            .put
            .iter()
            .all(|(k, o)| self.committed.get(k).is_some_and(|c| c >= o));
        self.recycle_due = settled && self.runner.wants_recycle();
        Ok(durable)
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

// The generated bindings take the config as `&Vec`.
#[allow(clippy::ptr_arg)]
fn open(
    runner: &mut Runner<SinkConnector>,
    config: &Vec<(String, String)>,
    committed: &Vec<LogPosition>,
) -> Result<(), HostError> {
    let r = runner.call("open", |b, s| {
        b.weir_connector_sink().call_open(s, config, committed)
    })?;
    runner.plugin_result("open", r)
}
