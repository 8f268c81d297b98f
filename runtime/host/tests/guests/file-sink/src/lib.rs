//! Appends `<topic>/<partition>/<offset> <key> <value>` lines to the file at `path` (under a
//! granted directory), buffered by `put` and written and synced by `flush`, which reports
//! every position it was asked for as durable once the file is synced. `durable` bends that
//! report for tests: `first` reports only the first position asked, `past` one beyond it.
use std::io::Write;

use weir_sdk::{
    Batch, Config, ConfigType, Descriptor, Error, Level, LogPosition, PluginKind, Sink,
};

struct FileSink {
    path: String,
    durable: String,
    buffer: Vec<u8>,
}

fn text(b: Option<&[u8]>) -> String {
    b.map_or_else(
        || "-".to_string(),
        |v| String::from_utf8_lossy(v).into_owned(),
    )
}

impl Sink for FileSink {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "file-sink",
            "0.2.0",
            PluginKind::Sink,
            "Appends records to a file as lines",
        );
        d.config.push(weir_sdk::config_key(
            "path",
            ConfigType::String,
            true,
            None,
            "file to append to, under a granted directory",
        ));
        d.config.push(weir_sdk::config_key(
            "durable",
            ConfigType::String,
            false,
            Some("all"),
            "which positions flush reports: all, first, past",
        ));
        d
    }

    fn open(config: Config, committed: Vec<LogPosition>) -> Result<Self, Error> {
        for p in &committed {
            weir_sdk::log(
                Level::Info,
                &format!("resuming after {}/{}/{}", p.topic, p.partition, p.offset),
            );
        }
        let durable = weir_sdk::config_get(&config, "durable")
            .unwrap_or("all")
            .to_string();
        if !matches!(durable.as_str(), "all" | "first" | "past") {
            return Err(weir_sdk::invalid_config(
                "durable",
                "must be all, first or past",
            ));
        }
        Ok(FileSink {
            path: weir_sdk::config_required(&config, "path")?.to_string(),
            durable,
            buffer: Vec::new(),
        })
    }

    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        // A bad record means nothing of the batch was done: buffer only once all are good.
        let mut lines = String::new();
        for r in batch.iter() {
            let (Some(partition), Some(offset)) = (r.partition(), r.offset()) else {
                return Err(weir_sdk::bad_record(r.index(), "record has no position"));
            };
            lines.push_str(&format!(
                "{}/{partition}/{offset} {} {}\n",
                r.topic(),
                text(r.key()),
                text(r.value())
            ));
        }
        self.buffer.extend_from_slice(lines.as_bytes());
        Ok(())
    }

    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error> {
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(&self.buffer)?;
            f.sync_all()
        };
        write().map_err(|e| Error::Retriable(format!("{}: {e}", self.path)))?;
        self.buffer.clear();
        Ok(match self.durable.as_str() {
            "first" => up_to.into_iter().take(1).collect(),
            "past" => up_to
                .into_iter()
                .map(|p| LogPosition {
                    offset: p.offset + 1,
                    ..p
                })
                .collect(),
            _ => up_to,
        })
    }
}

weir_sdk::export_sink!(FileSink);
