//! `file-sink`: writes records to a file, one line each (the value's bytes and `\n`; `null`
//! for a null value), as Kafka's FileStreamSinkConnector does (`file`), and exactly once
//! across crashes, `kill -9` included.
//!
//! How: `put` appends lines to the file (through a buffer); `flush` writes the rest, syncs the
//! file, then records in a [`sidecar`] (`.<name>.weir-sink`, same directory) the file's length
//! and the last offset written per topic partition, and reports exactly those positions as
//! durable (never more than asked), so the runtime commits only what the file durably holds.
//! `open` reads the sidecar and truncates the file to the recorded length (lines written after
//! the last flush are dropped: the runtime delivers them again from its committed positions),
//! and `put` skips every record at or before the recorded offset of its partition (delivered
//! again because the runtime had committed less than the sidecar holds). Without a sidecar the
//! sink starts one, keeping what the file already holds and appending after it.
//!
//! One task, one writer: two tasks appending to one file could not keep this promise.

pub mod sidecar;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use weir_sdk::{
    Batch, Config, ConfigError, ConfigType, Descriptor, Error, Level, LogPosition, PluginKind, Sink,
};

use sidecar::{Positions, Sidecar};

const FILE: &str = "file";
/// `put` writes the buffered lines to the file once they pass this many bytes.
const SPILL_BYTES: usize = 1024 * 1024;

/// Logs through the host (`eprintln!` in native unit tests, where there is no host).
fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    weir_sdk::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}

#[derive(Debug)]
pub struct FileSink {
    path: String,
    sidecar_path: PathBuf,
    /// The output file, opened to append.
    file: File,
    /// The file's length: what the sidecar records plus what was written since.
    length: u64,
    /// Lines not written to the file yet.
    buffer: Vec<u8>,
    /// The last offset per topic partition in the file or the buffer: a record at or before
    /// it is a redelivery, and skipped.
    written: Positions,
    /// What the sidecar on disk says.
    durable: Sidecar,
    /// A failed write could not be undone: the file past the sidecar's length is unknown.
    broken: bool,
}

/// The output file's path, or the problem with the config.
fn file_key(config: &Config) -> Result<String, ConfigError> {
    let bad = |message: &str| ConfigError {
        key: FILE.into(),
        message: message.into(),
    };
    match weir_sdk::config_get(config, FILE).map(str::trim) {
        None => Err(bad("required: the file to write the records to")),
        Some("") => Err(bad("must not be empty")),
        Some(f) if f.ends_with('/') || sidecar::path_for(f).is_err() => {
            Err(bad(&format!("{f:?} names a directory, not a file")))
        }
        Some(f) => Ok(f.to_string()),
    }
}

impl Sink for FileSink {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "file-sink",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Sink,
            "Writes each record's value to a file as a line (Kafka's FileStreamSink), exactly once",
        );
        d.config.push(weir_sdk::config_key(
            FILE,
            ConfigType::String,
            true,
            None,
            "The file to append the records to, one line each. A sidecar .<name>.weir-sink next to it records what is durable.",
        ));
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        file_key(config).err().into_iter().collect()
    }

    /// One task: the file has one writer.
    fn task_configs(config: Config, _max_tasks: u32) -> Result<Vec<Config>, Error> {
        Ok(vec![config])
    }

    fn open(config: Config, committed: Vec<LogPosition>) -> Result<Self, Error> {
        let path = file_key(&config).map_err(Error::InvalidConfig)?;
        let sidecar_path =
            sidecar::path_for(&path).map_err(|e| weir_sdk::invalid_config(FILE, &e))?;
        let recorded = Sidecar::read(&sidecar_path)
            .map_err(|e| Error::Fatal(format!("{e}; move it away to start afresh")))?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied => weir_sdk::invalid_config(
                FILE,
                &format!("cannot open {path}: {e} (is its directory granted to the connector with weir.dirs, writable?)"),
            ),
            _ => Error::Retriable(format!("cannot open {path}: {e}")),
        })?;
        let io = |what: &str, e: std::io::Error| Error::Retriable(format!("{what} {path}: {e}"));
        let length = file
            .metadata()
            .map_err(|e| io("cannot read the length of", e))?
            .len();
        let mut sink = FileSink {
            sidecar_path,
            file,
            length,
            buffer: Vec::new(),
            written: Positions::new(),
            durable: Sidecar::default(),
            broken: false,
            path: path.clone(),
        };
        match recorded {
            Some(s) if length > s.length => {
                sink.file
                    .set_len(s.length)
                    .map_err(|e| io("cannot truncate", e))?;
                sink.file.sync_all().map_err(|e| io("cannot sync", e))?;
                log(
                    Level::Info,
                    &format!(
                        "{path}: dropped the {} bytes written after the last flush (they are delivered again)",
                        length - s.length
                    ),
                );
                sink.length = s.length;
                sink.durable = s;
            }
            Some(s) => {
                if length < s.length {
                    log(
                        Level::Warn,
                        &format!(
                            "{path} is shorter ({length} bytes) than its sidecar records ({} bytes): something else changed it; appending after its end",
                            s.length
                        ),
                    );
                }
                sink.durable = Sidecar { length, ..s };
            }
            None => {
                log(
                    Level::Info,
                    &format!("{path}: no sidecar; appending after its {length} bytes"),
                );
                sink.durable = Sidecar {
                    length,
                    ..Sidecar::default()
                };
            }
        }
        // From here on a crash drops exactly what this task appends before its next flush.
        sink.durable.write(&sink.sidecar_path).map_err(|e| {
            Error::Retriable(format!("cannot write {}: {e}", sink.sidecar_path.display()))
        })?;
        sink.written = sink.durable.positions.clone();
        for c in &committed {
            if let Some(&w) = sink
                .written
                .get(&c.topic)
                .and_then(|ps| ps.get(&c.partition))
                && w > c.offset
            {
                log(
                    Level::Info,
                    &format!(
                        "{}/{}: offsets {}..={w} are already in {path}; skipping them when they are delivered again",
                        c.topic,
                        c.partition,
                        c.offset + 1
                    ),
                );
            }
        }
        Ok(sink)
    }

    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        if let Some(r) = batch
            .iter()
            .find(|r| r.partition().is_none() || r.offset().is_none())
        {
            return Err(weir_sdk::bad_record(
                r.index(),
                "the record has no partition or offset",
            ));
        }
        let mut skipped = 0usize;
        for r in batch.iter() {
            let (Some(partition), Some(offset)) = (r.partition(), r.offset()) else {
                continue;
            };
            match self.written.get_mut(r.topic()) {
                Some(ps) => match ps.get(&partition) {
                    Some(&last) if offset <= last => {
                        skipped += 1;
                        continue;
                    }
                    _ => {
                        ps.insert(partition, offset);
                    }
                },
                None => {
                    self.written
                        .insert(r.topic().to_string(), BTreeMap::from([(partition, offset)]));
                }
            }
            // Kafka's FileStreamSinkTask prints a null value as `null`.
            self.buffer.extend_from_slice(r.value().unwrap_or(b"null"));
            self.buffer.push(b'\n');
        }
        if skipped > 0 {
            log(
                Level::Debug,
                &format!("skipped {skipped} records already in {}", self.path),
            );
        }
        if self.buffer.len() >= SPILL_BYTES {
            self.write_out()?;
        }
        Ok(())
    }

    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error> {
        self.write_out()?;
        if self.length != self.durable.length || self.written != self.durable.positions {
            self.file
                .sync_all()
                .map_err(|e| Error::Retriable(format!("cannot sync {}: {e}", self.path)))?;
            let next = Sidecar {
                length: self.length,
                positions: self.written.clone(),
            };
            next.write(&self.sidecar_path).map_err(|e| {
                Error::Retriable(format!("cannot write {}: {e}", self.sidecar_path.display()))
            })?;
            self.durable = next;
        }
        Ok(up_to
            .into_iter()
            .filter_map(|p| {
                let durable = *self.durable.positions.get(&p.topic)?.get(&p.partition)?;
                Some(LogPosition {
                    offset: durable.min(p.offset),
                    ..p
                })
            })
            .collect())
    }

    fn close(&mut self) {
        let pending = self.buffer.len() as u64 + self.length - self.durable.length;
        if pending > 0 {
            log(
                Level::Info,
                &format!(
                    "closing {} with {pending} bytes not flushed: they are dropped at the next open and delivered again",
                    self.path
                ),
            );
        }
    }
}

impl FileSink {
    /// Appends the buffered lines to the file. A failed write is undone (the file cut back to
    /// where it was) and kept buffered, so that trying again writes it once.
    fn write_out(&mut self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Fatal(format!(
                "an earlier write to {} failed and could not be undone; restart the task (it drops what was written after the last flush)",
                self.path
            )));
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buffer) {
            Ok(()) => {
                self.length += self.buffer.len() as u64;
                self.buffer.clear();
                Ok(())
            }
            Err(e) => match self.file.set_len(self.length) {
                Ok(()) => Err(Error::Retriable(format!("cannot write {}: {e}", self.path))),
                Err(undo) => {
                    self.broken = true;
                    Err(Error::Fatal(format!(
                        "cannot write {}: {e}; nor cut the partial write back ({undo}): restart the task",
                        self.path
                    )))
                }
            },
        }
    }
}

weir_sdk::export_sink!(FileSink);

#[cfg(test)]
mod tests;
