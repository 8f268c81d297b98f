//! `file-source`: tails files into a topic, one record per line, compatible with Kafka's
//! FileStreamSourceConnector (`file`, `topic`, `batch.size`, and its offsets), plus a
//! directory mode (`directory`, `pattern`) that reads every matching file, new ones included,
//! told about them by the host's `watch` capability.
//!
//! Each record: key null, value the line without its terminator, source partition
//! `{"filename":"<path>"}`, source offset `{"position":<byte after the line>}` ([`offsets`]).
//! `open` seeks each file to its committed offset; a poll reads what was appended since
//! ([`tail`]), and returns an empty batch when there is nothing new. Nothing is kept between
//! polls but positions, so a recycled instance resumes from the stored offsets.
//!
//! Modules: [`config`] (keys, checks), [`tail`] (reading one file), [`offsets`] (the Kafka
//! format), [`glob`] (directory patterns).

pub mod config;
pub mod glob;
pub mod offsets;
pub mod tail;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weir_sdk::{
    BatchBuilder, Change, Config, ConfigError, Descriptor, Error, Level, Offsets, PluginKind,
    RecordData, Source,
};

use config::{Settings, Target};
use tail::{Limits, Outcome, Tail};

/// The most line bytes one poll returns (across files).
const POLL_BYTES: usize = 4 * 1024 * 1024;
/// Directory mode: how often the directory is listed again, in case the watcher missed a
/// change (its queue is bounded) or could not be started.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Directory mode without a watcher: list the directory this often instead.
const SWEEP_UNWATCHED: Duration = Duration::from_secs(1);
/// Most watch events taken per poll.
const EVENTS_PER_POLL: u32 = 4096;

/// Logs through the host (`eprintln!` in native unit tests, where there is no host).
fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    weir_sdk::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}

/// One file being read.
#[derive(Debug)]
struct Tracked {
    tail: Tail,
    /// Its source partition, `{"filename":...}`.
    partition: Vec<u8>,
    /// A problem was logged and not yet followed by a good read (log it once).
    complained: bool,
}

impl Tracked {
    fn new(path: String, position: u64) -> Tracked {
        Tracked {
            partition: offsets::partition(&path),
            tail: Tail::new(path, position),
            complained: false,
        }
    }
}

/// Directory mode's state.
#[derive(Debug)]
struct Directory {
    dir: String,
    pattern: String,
    /// Files with news (a change event, a read cut short by a limit), read by the next poll.
    dirty: BTreeSet<String>,
    last_sweep: Instant,
    sweep_every: Duration,
}

#[derive(Debug)]
pub struct FileSource {
    topic: String,
    batch_size: u32,
    files: BTreeMap<String, Tracked>,
    /// `None`: one file, read at every poll.
    directory: Option<Directory>,
    /// Which file the next poll starts with, so one busy file cannot starve the others.
    turn: usize,
}

fn first_error(problems: Vec<ConfigError>) -> Error {
    match problems.into_iter().next() {
        Some(e) => Error::InvalidConfig(e),
        None => Error::Fatal("invalid configuration".into()),
    }
}

impl Source for FileSource {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "file-source",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Source,
            "Tails a file (Kafka's FileStreamSource), or every matching file of a directory, into a topic: one record per line",
        );
        d.config = config::keys();
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        Settings::parse(config).err().unwrap_or_default()
    }

    /// One task: a file is read in order by one reader (Kafka's FileStreamSource is
    /// single-task too), and a directory's files are found by one watcher.
    fn task_configs(config: Config, _max_tasks: u32) -> Result<Vec<Config>, Error> {
        Ok(vec![config])
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let settings = Settings::parse(&config).map_err(first_error)?;
        let mut positions: BTreeMap<String, u64> = BTreeMap::new();
        for (p, o) in &committed {
            match offsets::parse(p, o) {
                Some((path, position)) => {
                    positions.insert(path, position);
                }
                None => log(
                    Level::Warn,
                    &format!(
                        "ignoring a committed offset not in the file format: {} = {}",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(o)
                    ),
                ),
            }
        }
        let mut source = FileSource {
            topic: settings.topic,
            batch_size: settings.batch_size,
            files: BTreeMap::new(),
            directory: None,
            turn: 0,
        };
        match settings.target {
            Target::File(path) => {
                check_reachable(config::FILE, parent(&path))?;
                let position = positions.get(&path).copied().unwrap_or(0);
                log(Level::Info, &format!("tailing {path} from byte {position}"));
                source
                    .files
                    .insert(path.clone(), Tracked::new(path, position));
            }
            Target::Directory { dir, pattern } => {
                check_reachable(config::DIRECTORY, &dir)?;
                // Watch first, then list: a file created in between is seen twice, never missed.
                let sweep_every = match weir_sdk::watch(&dir, false) {
                    Ok(()) => SWEEP_EVERY,
                    Err(e) => {
                        log(
                            Level::Warn,
                            &format!("cannot watch {dir} ({e}); listing it every second instead"),
                        );
                        SWEEP_UNWATCHED
                    }
                };
                let mut d = Directory {
                    dir,
                    pattern,
                    dirty: BTreeSet::new(),
                    last_sweep: Instant::now(),
                    sweep_every,
                };
                // Files there now resume at their committed offsets; files that appear later
                // are new files, read from the start.
                for path in list(&d).map_err(Error::Retriable)? {
                    let position = positions.get(&path).copied().unwrap_or(0);
                    d.dirty.insert(path.clone());
                    source
                        .files
                        .insert(path.clone(), Tracked::new(path, position));
                }
                log(
                    Level::Info,
                    &format!(
                        "tailing {} files matching {:?} in {}",
                        source.files.len(),
                        d.pattern,
                        d.dir
                    ),
                );
                source.directory = Some(d);
            }
        }
        Ok(source)
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let max = max.min(self.batch_size) as usize;
        if max == 0 {
            return Ok(());
        }
        let candidates: Vec<String> = match &mut self.directory {
            None => self.files.keys().cloned().collect(),
            Some(d) => {
                discover(d, &mut self.files);
                std::mem::take(&mut d.dirty).into_iter().collect()
            }
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let start = self.turn % candidates.len();
        self.turn = self.turn.wrapping_add(1);
        let mut bytes = 0usize;
        for (i, path) in candidates
            .iter()
            .cycle()
            .skip(start)
            .take(candidates.len())
            .enumerate()
        {
            if out.len() >= max || bytes >= POLL_BYTES {
                // Out of room: the rest stay due for the next poll.
                if let Some(d) = &mut self.directory {
                    d.dirty.extend(
                        candidates
                            .iter()
                            .cycle()
                            .skip(start + i)
                            .take(candidates.len() - i)
                            .cloned(),
                    );
                }
                break;
            }
            let Some(t) = self.files.get_mut(path) else {
                continue;
            };
            let limits = Limits {
                records: max - out.len(),
                bytes: POLL_BYTES - bytes,
            };
            let (topic, partition) = (&self.topic, &t.partition);
            let result = t.tail.read(limits, |line, position| {
                bytes += line.len();
                let offset = offsets::offset(position);
                out.push(&RecordData {
                    value: Some(line),
                    topic,
                    source_partition: Some(partition),
                    source_offset: Some(&offset),
                    ..Default::default()
                });
            });
            match result {
                Ok(Outcome::Missing) => match &mut self.directory {
                    Some(_) => {
                        log(
                            Level::Info,
                            &format!("{path} is gone; no longer reading it"),
                        );
                        self.files.remove(path);
                    }
                    None if !t.complained => {
                        t.complained = true;
                        log(
                            Level::Warn,
                            &format!("{path} does not exist; waiting for it to be created"),
                        );
                    }
                    None => {}
                },
                Ok(Outcome::Read {
                    more,
                    restarted_from,
                    cut,
                    ..
                }) => {
                    t.complained = false;
                    if let Some(from) = restarted_from {
                        log(
                            Level::Info,
                            &format!(
                                "{path} is a new file (shorter than byte {from}, or its first bytes changed); reading it from the start"
                            ),
                        );
                    }
                    if cut {
                        log(
                            Level::Warn,
                            &format!(
                                "{path}: a line longer than {} bytes was split into several records",
                                tail::MAX_LINE
                            ),
                        );
                    }
                    if more && let Some(d) = &mut self.directory {
                        d.dirty.insert(path.clone());
                    }
                }
                Err(e) => {
                    if !t.complained {
                        t.complained = true;
                        log(Level::Warn, &format!("cannot read {path}: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn close(&mut self) {
        for t in self.files.values() {
            log(
                Level::Info,
                &format!("closing {} at byte {}", t.tail.path(), t.tail.position()),
            );
        }
    }
}

/// The directory part of a file path (`.` for a bare name).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// An `invalid-config` error for `key` unless `dir` is a directory the task can read.
fn check_reachable(key: &str, dir: &str) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(weir_sdk::invalid_config(
            key,
            &format!("{dir} is not a directory"),
        )),
        Err(e) => Err(weir_sdk::invalid_config(
            key,
            &format!(
                "cannot reach directory {dir}: {e} (is it granted to the connector with weir.dirs?)"
            ),
        )),
    }
}

/// The paths of the directory's files whose names match the pattern, sorted.
fn list(d: &Directory) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(&d.dir).map_err(|e| format!("cannot list {}: {e}", d.dir))?;
    let mut paths = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `metadata` follows a symlink to a file, as reading it will.
        let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_file && glob::matches(&d.pattern, name) {
            paths.push(config::join(&d.dir, name));
        }
    }
    paths.sort();
    Ok(paths)
}

/// Directory mode: turns change events (and, now and then, a listing) into files to read.
fn discover(d: &mut Directory, files: &mut BTreeMap<String, Tracked>) {
    let dir_parts: Vec<&str> = components(&d.dir);
    loop {
        let events = weir_sdk::watch_events(EVENTS_PER_POLL);
        let n = events.len();
        for e in events {
            let parts = components(&e.path);
            let Some((name, parent)) = parts.split_last() else {
                continue;
            };
            if parent != dir_parts.as_slice() || !glob::matches(&d.pattern, name) {
                continue;
            }
            let path = config::join(&d.dir, name);
            match e.change {
                Change::Created | Change::Modified => {
                    if !files.contains_key(&path) {
                        log(Level::Info, &format!("new file {path}"));
                        files.insert(path.clone(), Tracked::new(path.clone(), 0));
                    }
                    d.dirty.insert(path);
                }
                // The next read notices that it is gone (or, recreated at once, that it is
                // a new file).
                Change::Removed => {
                    if files.contains_key(&path) {
                        d.dirty.insert(path);
                    }
                }
            }
        }
        if n < EVENTS_PER_POLL as usize {
            break;
        }
    }
    if d.last_sweep.elapsed() >= d.sweep_every {
        d.last_sweep = Instant::now();
        match list(d) {
            Ok(paths) => {
                for path in paths {
                    if !files.contains_key(&path) {
                        log(Level::Info, &format!("new file {path}"));
                        files.insert(path.clone(), Tracked::new(path.clone(), 0));
                    }
                }
                d.dirty.extend(files.keys().cloned());
            }
            Err(e) => log(Level::Warn, &e),
        }
    }
}

/// A path's names, without empty and `.` parts, to compare paths written differently.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

weir_sdk::export_source!(FileSource);
