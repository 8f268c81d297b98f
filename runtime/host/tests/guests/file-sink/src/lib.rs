//! Appends `<topic>/<partition>/<offset> <key> <value>` lines to the file at `path` (under a
//! granted directory), buffered by `put` and written and synced by `flush`.
use std::io::Write;

use weir_sdk::{BadRecord, ConfigType, Descriptor, Error, LogPosition, PluginKind, Record, Sink};

struct FileSink {
    path: String,
    buffer: Vec<u8>,
}

fn text(b: &Option<Vec<u8>>) -> String {
    b.as_ref().map_or_else(|| "-".to_string(), |v| String::from_utf8_lossy(v).into_owned())
}

impl Sink for FileSink {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("file-sink", "0.1.0", PluginKind::Sink, "Appends records to a file as lines");
        d.config = vec![weir_sdk::config_key("path", ConfigType::String, true, None, "file to append to, under a granted directory")];
        d
    }

    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(FileSink { path: weir_sdk::config_required(&config, "path")?.to_string(), buffer: Vec::new() })
    }

    fn put(&mut self, batch: Vec<Record>) -> Result<(), Error> {
        for (i, r) in batch.iter().enumerate() {
            let Some(p) = &r.position else {
                return Err(Error::BadRecord(BadRecord { index: i as u32, message: "record has no position".into() }));
            };
            let line = format!("{}/{}/{} {} {}\n", p.topic, p.partition, p.offset, text(&r.key), text(&r.value));
            self.buffer.extend_from_slice(line.as_bytes());
        }
        Ok(())
    }

    fn flush(&mut self, _up_to: Vec<LogPosition>) -> Result<(), Error> {
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            f.write_all(&self.buffer)?;
            f.sync_all()
        };
        write().map_err(|e| Error::Retriable(format!("{}: {e}", self.path)))?;
        self.buffer.clear();
        Ok(())
    }
}

weir_sdk::export_sink!(FileSink);
