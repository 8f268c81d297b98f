//! `null-sink`: takes every record and keeps none; everything put is durable at once. For
//! benchmarks (the runtime's own cost, without a sink's) and tests. `tasks.max` tasks share
//! the topic's partitions.

use weir_sdk::{Batch, Config, Descriptor, Error, Level, LogPosition, PluginKind, Sink};

#[derive(Debug, Default)]
struct NullSink {
    records: u64,
}

impl Sink for NullSink {
    fn describe() -> Descriptor {
        weir_sdk::descriptor(
            "null-sink",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Sink,
            "Discards records: a sink for benchmarks and tests",
        )
    }

    fn task_configs(config: Config, max_tasks: u32) -> Result<Vec<Config>, Error> {
        Ok(vec![config; max_tasks.max(1) as usize])
    }

    fn open(_config: Config, _committed: Vec<LogPosition>) -> Result<Self, Error> {
        Ok(NullSink::default())
    }

    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        self.records += batch.len() as u64;
        Ok(())
    }

    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error> {
        Ok(up_to)
    }

    fn close(&mut self) {
        #[cfg(target_arch = "wasm32")]
        weir_sdk::log(Level::Info, &format!("discarded {} records", self.records));
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (Level::Info, self.records);
    }
}

weir_sdk::export_sink!(NullSink);
