//! `weir plugin inspect|install|run`: look inside a WebAssembly connector, add it to the
//! plugin directory, versions side by side (`<dir>/<name>/<version>.wasm`), or run it on JSON
//! lines (a transform or sink reads them, a source writes them) with the grants its config
//! names, to try a plugin without a pipeline.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use weir_host::types::{self, ConfigType, LogPosition, PluginKind};
use weir_host::weir_batch::{Batch, BatchBuilder, RecordData, RecordRef};
use weir_host::{Host, HostConfig, HostError, TaskConfig};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCmd {
    /// Print a plugin's world, name, version, kind and configuration definition.
    Inspect { file: PathBuf },
    /// Copy a plugin into the plugin directory as <name>/<version>.wasm.
    Install {
        file: PathBuf,
        /// Plugin directory.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// Replace an installed plugin of the same name and version.
        #[arg(long)]
        force: bool,
    },
    /// Create a Rust plugin project in DIR (the SDK and the contract are written into it, so
    /// it builds wherever the directory goes).
    New {
        dir: PathBuf,
        /// transform, source or sink.
        #[arg(long, default_value = "transform")]
        kind: String,
    },
    /// Run a plugin on JSON lines: a transform reads records and prints what it returns, a
    /// sink reads records, puts them in batches and flushes at the end, a source prints what
    /// it polls (acking each batch) until it returns an empty batch. A bad record is reported
    /// with its input line and the rest go on; the exit status is then 1.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    file: PathBuf,
    /// A configuration key, KEY=VALUE (repeatable). Runtime keys grant capabilities:
    /// weir.dirs=HOST:GUEST[:ro], weir.http.allow=host[:port], weir.recycle.calls=N, ...
    #[arg(long = "config", short = 'c', value_parser = key_value)]
    config: Vec<(String, String)>,
    /// Records as JSON lines (default: standard input). Not read for a source.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Records per call.
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// Sources: stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Sources: keep polling when a poll comes back empty (like `tail -f`), until
    /// --max-records or SIGINT/SIGTERM; then close the source and exit 0.
    #[arg(long)]
    follow: bool,
    /// The position last committed (repeatable). Sources: SOURCE_PARTITION=SOURCE_OFFSET;
    /// sinks: TOPIC/PARTITION=OFFSET.
    #[arg(long, value_parser = key_value)]
    committed: Vec<(String, String)>,
    /// Memory cap of the task, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: usize,
    /// Longest one call may run, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// A record as a JSON line. Bytes are UTF-8 text (invalid sequences are replaced on output).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, Option<String>)>,
    #[serde(default)]
    timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_offset: Option<String>,
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|v| String::from_utf8_lossy(v).into_owned())
}

impl JsonRecord {
    /// Appends the record to a batch: with an offset it is a record read from a topic (a
    /// sink's input), otherwise its topic and partition say where to write it.
    fn push_to(&self, b: &mut BatchBuilder) {
        let headers: Vec<(&str, Option<&[u8]>)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref().map(str::as_bytes)))
            .collect();
        b.push(&RecordData {
            timestamp: self.timestamp,
            key: self.key.as_deref().map(str::as_bytes),
            value: self.value.as_deref().map(str::as_bytes),
            headers: &headers,
            topic: self.topic.as_deref().unwrap_or(""),
            partition: self.partition,
            offset: self.offset,
            source_partition: self.source_partition.as_deref().map(str::as_bytes),
            source_offset: self.source_offset.as_deref().map(str::as_bytes),
        });
    }

    fn from_ref(r: &RecordRef<'_>) -> JsonRecord {
        JsonRecord {
            topic: (!r.topic().is_empty()).then(|| r.topic().to_string()),
            partition: r.partition(),
            offset: r.offset(),
            key: text(r.key()),
            value: text(r.value()),
            headers: r
                .headers()
                .map(|h| (h.name.to_string(), text(h.value)))
                .collect(),
            timestamp: r.timestamp(),
            source_partition: text(r.source_partition()),
            source_offset: text(r.source_offset()),
        }
    }
}

/// Records read from the input, each with its line number.
type Chunk = Vec<(usize, JsonRecord)>;

fn encode(chunk: &[(usize, JsonRecord)]) -> anyhow::Result<Vec<u8>> {
    let mut b = BatchBuilder::with_capacity(chunk.len(), 0);
    for (_, r) in chunk {
        r.push_to(&mut b);
    }
    Ok(b.finish()?)
}

/// Where compiled components are cached between runs.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WEIR_PLUGIN_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("compiled"))
}

/// Input records, read a batch at a time (a large file is never held whole).
struct RecordReader {
    lines: std::iter::Enumerate<std::io::Lines<Box<dyn BufRead>>>,
}

impl RecordReader {
    fn open(args: &RunArgs) -> anyhow::Result<RecordReader> {
        let reader: Box<dyn BufRead> = match &args.input {
            Some(p) => Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            )),
            None => Box::new(std::io::stdin().lock()),
        };
        Ok(RecordReader {
            lines: reader.lines().enumerate(),
        })
    }

    /// Up to `n` records with their line numbers; empty at the end of the input.
    fn next_batch(&mut self, n: usize) -> anyhow::Result<Chunk> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            let Some((i, line)) = self.lines.next() else {
                break;
            };
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let r: JsonRecord = serde_json::from_str(&line)
                .with_context(|| format!("input line {}: not a JSON record", i + 1))?;
            out.push((i + 1, r));
        }
        Ok(out)
    }
}

fn print_batch(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<usize> {
    let batch = Batch::parse(bytes)?;
    for r in batch.iter() {
        serde_json::to_writer(&mut *out, &JsonRecord::from_ref(&r))?;
        out.write_all(b"\n")?;
    }
    Ok(batch.len())
}

/// Runs `call` on a chunk; a record the plugin reports bad is reported with its input line
/// (where the runtime would dead-letter it) and the call is made again with the others, as
/// the runtime does. Returns what the last successful call returned.
fn with_bad_records<T>(
    chunk: &mut Chunk,
    bad: &mut usize,
    mut call: impl FnMut(&Vec<u8>) -> Result<T, HostError>,
) -> anyhow::Result<Option<T>> {
    loop {
        if chunk.is_empty() {
            return Ok(None);
        }
        let input = encode(chunk)?;
        match call(&input) {
            Err(HostError::Plugin {
                function,
                error: types::Error::BadRecord(b),
                ..
            }) if (b.index as usize) < chunk.len() => {
                let (line, _) = chunk.remove(b.index as usize);
                *bad += 1;
                eprintln!("input line {line}: bad record ({function}): {}", b.message);
            }
            Ok(v) => return Ok(Some(v)),
            // A trap or an error names the batch by its input lines (the plugin's stderr, in
            // the message, names the record within it when its SDK knows).
            Err(e) => {
                let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
                let lines = if first == last {
                    format!("the batch of input line {first}")
                } else {
                    format!("the batch of input lines {first}-{last}")
                };
                return Err(anyhow::Error::new(e).context(lines));
            }
        }
    }
}

fn run_plugin(args: RunArgs) -> anyhow::Result<()> {
    if args.memory_mib == 0 || args.memory_mib << 20 > weir_host::MAX_MEMORY_LIMIT {
        anyhow::bail!(
            "--memory-mib must be between 1 and 4096 (a wasm32 memory holds at most 4 GiB), got {}",
            args.memory_mib
        );
    }
    let host = Host::new(HostConfig {
        cache_dir: cache_dir(),
        memory_limit: args.memory_mib << 20,
        call_deadline: std::time::Duration::from_millis(args.deadline_ms),
    })?
    .with_sql_backend(std::sync::Arc::new(weir_sql::SqlxBackend::new()?));
    let plugin = host.load(&args.file)?;
    let (mut tc, config) = TaskConfig::from_config(&args.config)?;
    if tc.task.is_empty() {
        tc.task = format!("{}-0", plugin.name);
    }
    plugin.check_versions(&host)?;
    let kind = plugin.kind(&host).with_context(|| {
        format!(
            "{} exports none of the weir:connector worlds (it exports: {})",
            args.file.display(),
            plugin.exports(&host).join(", ")
        )
    })?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let batch = args.batch.max(1) as usize;
    let mut bad = 0usize;
    match kind {
        PluginKind::Transform => {
            let mut input = RecordReader::open(&args)?;
            let mut task = plugin.transform(&host, &config, &tc)?;
            loop {
                let mut chunk = input.next_batch(batch)?;
                if chunk.is_empty() {
                    break;
                }
                let mut last_input = Vec::new();
                let output = with_bad_records(&mut chunk, &mut bad, |i| {
                    last_input = i.clone();
                    task.apply(i)
                })?;
                if let Some(o) = output {
                    print_batch(&mut out, &weir_host::output_batch(&last_input, o)?)?;
                }
            }
        }
        PluginKind::Sink => {
            let committed = sink_committed(&args.committed)?;
            let mut input = RecordReader::open(&args)?;
            let mut task = plugin.sink(&host, &config, &committed, &tc)?;
            let mut up_to: BTreeMap<(String, i32), i64> = BTreeMap::new();
            let mut count = 0usize;
            loop {
                let mut chunk = input.next_batch(batch)?;
                if chunk.is_empty() {
                    break;
                }
                if with_bad_records(&mut chunk, &mut bad, |i| task.put(i))?.is_none() {
                    continue;
                }
                count += chunk.len();
                for (_, r) in &chunk {
                    if let (Some(t), Some(p), Some(o)) = (&r.topic, r.partition, r.offset) {
                        let e = up_to.entry((t.clone(), p)).or_insert(o);
                        *e = (*e).max(o);
                    }
                }
            }
            let asked: Vec<LogPosition> = up_to
                .into_iter()
                .map(|((topic, partition), offset)| LogPosition {
                    topic,
                    partition,
                    offset,
                })
                .collect();
            let durable = task.flush(&asked)?;
            task.close()?;
            let show = |ps: &[LogPosition]| {
                ps.iter()
                    .map(|p| format!("{}/{}/{}", p.topic, p.partition, p.offset))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // What `flush` reports is what the runtime would commit.
            eprintln!(
                "put {count} records, flushed up to {}; durable (would be committed): {}",
                show(&asked),
                if durable.is_empty() {
                    "nothing".to_string()
                } else {
                    show(&durable)
                }
            );
        }
        PluginKind::Source => {
            let committed: Vec<(Vec<u8>, Vec<u8>)> = args
                .committed
                .iter()
                .map(|(p, o)| (p.clone().into_bytes(), o.clone().into_bytes()))
                .collect();
            let mut task = plugin.source(&host, &config, &committed, &tc)?;
            let stop = Arc::new(AtomicBool::new(false));
            if args.follow {
                let flag = stop.clone();
                tokio::spawn(async move {
                    stop_signal().await;
                    flag.store(true, Ordering::Relaxed);
                });
            }
            let mut emitted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let want = match args.max_records {
                    Some(max) if emitted >= max => break,
                    Some(max) => (max - emitted).min(batch as u64) as u32,
                    None => batch as u32,
                };
                let polled = task.poll(want)?;
                let batch = Batch::parse(&polled)?;
                if batch.is_empty() {
                    if !args.follow {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                emitted += batch.len() as u64;
                let mut last: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                for r in batch.iter() {
                    if let (Some(p), Some(o)) = (r.source_partition(), r.source_offset()) {
                        last.insert(p.to_vec(), o.to_vec());
                    }
                }
                print_batch(&mut out, &polled)?;
                out.flush()?;
                // Printed is this command's "stored": ack it as the runtime acks the log.
                task.ack(&last.into_iter().collect())?;
            }
            task.close()?;
        }
    }
    out.flush()?;
    if bad > 0 {
        anyhow::bail!(
            "{bad} bad record{} (reported above; the runtime would dead-letter them)",
            if bad == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// A sink's `--committed TOPIC/PARTITION=OFFSET` positions.
fn sink_committed(pairs: &[(String, String)]) -> anyhow::Result<Vec<LogPosition>> {
    pairs
        .iter()
        .map(|(tp, o)| {
            let parsed = tp.rsplit_once('/').and_then(|(t, p)| {
                Some(LogPosition {
                    topic: t.to_string(),
                    partition: p.parse().ok()?,
                    offset: o.parse().ok()?,
                })
            });
            parsed.with_context(|| {
                format!(
                    "--committed {tp}={o}: a sink's committed position is TOPIC/PARTITION=OFFSET"
                )
            })
        })
        .collect()
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn kind(k: PluginKind) -> &'static str {
    match k {
        PluginKind::Source => "source",
        PluginKind::Sink => "sink",
        PluginKind::Transform => "transform",
    }
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::String => "string",
        ConfigType::Int => "int",
        ConfigType::Long => "long",
        ConfigType::Double => "double",
        ConfigType::Boolean => "boolean",
        ConfigType::List => "list",
        ConfigType::Password => "password",
    }
}

fn describe(file: &Path) -> anyhow::Result<(weir_host::types::Descriptor, Vec<String>)> {
    // The compiled-component cache, as `plugin run` uses it: a Python component takes
    // seconds to compile. One describe call is a one-off: it gets `plugin run`'s memory and
    // a deadline long enough for an interpreter's component on a loaded machine (5 s was
    // seen to run out for a Python one).
    let host = Host::new(HostConfig {
        cache_dir: cache_dir(),
        memory_limit: 256 << 20,
        call_deadline: std::time::Duration::from_secs(30),
    })?;
    let plugin = host.load(file)?;
    let exports = plugin.exports(&host);
    let d = plugin.describe(&host)?;
    Ok((d, exports))
}

pub fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Run(args) => run_plugin(args)?,
        PluginCmd::New { dir, kind } => {
            let wasm = crate::scaffold::new_project(&dir, &kind)?;
            println!("created {} ({kind})", dir.display());
            println!("  cd {}", dir.display());
            println!("  rustup target add wasm32-wasip2          # once");
            println!("  cargo build --release --target wasm32-wasip2");
            println!("  weir plugin inspect {}", wasm.display());
        }
        PluginCmd::Inspect { file } => {
            let (d, exports) = describe(&file)?;
            println!("plugin:      {} {}", d.name, d.version);
            println!("kind:        {}", kind(d.kind));
            println!("exports:     {}", exports.join(", "));
            println!("description: {}", d.description);
            if d.config.is_empty() {
                println!("config:      (none)");
            } else {
                println!("config:");
                for k in d.config {
                    let mut flags = vec![type_name(k.type_).to_string()];
                    if k.required {
                        flags.push("required".into());
                    }
                    if k.secret {
                        flags.push("secret".into());
                    }
                    if let Some(def) = &k.default_value {
                        flags.push(format!("default {def}"));
                    }
                    println!("  {} ({}): {}", k.name, flags.join(", "), k.documentation);
                }
            }
        }
        PluginCmd::Install { file, dir, force } => {
            let (d, _) = describe(&file)?;
            let safe = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    && s != "."
                    && s != ".."
            };
            if !safe(&d.name) || !safe(&d.version) {
                anyhow::bail!(
                    "plugin name {:?} or version {:?} is not usable as a file name",
                    d.name,
                    d.version
                );
            }
            let target = dir.join(&d.name).join(format!("{}.wasm", d.version));
            if target.exists() && !force {
                anyhow::bail!(
                    "{} is already installed at {} (use --force to replace it)",
                    d.name,
                    target.display()
                );
            }
            std::fs::create_dir_all(target.parent().unwrap_or(&dir))
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let tmp = target.with_extension("wasm.tmp");
            std::fs::copy(&file, &tmp)
                .with_context(|| format!("cannot copy {}", file.display()))?;
            std::fs::rename(&tmp, &target)?;
            println!(
                "installed {} {} ({}) at {}",
                d.name,
                d.version,
                kind(d.kind),
                target.display()
            );
        }
    }
    Ok(())
}
