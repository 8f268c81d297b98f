//! `weir bench plugin`: records/s through four transforms (identity, filter, add-header,
//! json-rewrite) in each guest language (Rust, Python, JavaScript), at batches of 100, 1,000
//! and 10,000 records with 16 B, 256 B and 4 KiB values, against the same logic natively on
//! the same batch views (`weir_batch`), measured in the same run; and cold compile versus
//! cached load time. Prints a table and one verdict per goal; never fails on a timing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use weir_host::weir_batch::{Batch, BatchBuilder, RecordData};
use weir_host::{Host, HostConfig, Output, TaskConfig};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Plugin throughput per guest language against native Rust, and compile vs cached load.
    Plugin {
        /// Directory with the components: identity.wasm, filter.wasm, add_header.wasm and
        /// json_rewrite.wasm (Rust), and python-<name>.wasm, js-<name>.wasm for the same four
        /// (scripts/bench-plugin builds and gathers them).
        #[arg(long)]
        dir: PathBuf,
        /// Measure for 60 ms per figure instead of 300 ms.
        #[arg(long)]
        quick: bool,
        /// Only these transforms (comma separated: identity, filter, add-header, json-rewrite).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// The Connect runtime end to end (datagen -> topic -> null-sink, with and without
    /// transforms, three connectors' start-up and memory) against the broker's append rate.
    Pipeline(crate::bench_pipeline::PipelineArgs),
    /// PostgreSQL change data capture into a topic (one large transaction, many small ones,
    /// the initial snapshot) against pg_recvlogical and COPY on the same server.
    Cdc(crate::bench_cdc::CdcArgs),
}

/// A batch of `n` records: key `key-<i>`, one header, a JSON value of exactly `value_len`
/// bytes (`{"name":"u…"}`, at least 12).
fn input(n: usize, value_len: usize) -> Vec<u8> {
    let mut b = BatchBuilder::with_capacity(n, n * (value_len + 32));
    for i in 0..n {
        let key = format!("key-{i}");
        let name_len = value_len.max(12) - 11;
        let mut name = format!("u{i}");
        name.truncate(name_len);
        while name.len() < name_len {
            name.push('x');
        }
        let value = format!(r#"{{"name":"{name}"}}"#);
        b.push(&RecordData {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[("source", Some(b"bench"))],
            ..Default::default()
        });
    }
    b.finish().expect("a bench batch is small")
}

/// The four workloads natively, on the same views the guests get.
fn native(workload: &str, input: &[u8]) -> anyhow::Result<Output> {
    let batch = Batch::parse(input)?;
    Ok(match workload {
        "identity" => Output::Passthrough,
        "filter" => Output::Select(
            batch
                .iter()
                .filter(|r| r.index() % 2 == 0)
                .map(|r| r.index() as u32)
                .collect(),
        ),
        "add-header" => {
            let mut b = BatchBuilder::with_capacity(batch.len(), input.len() + batch.len() * 13);
            for r in batch.iter() {
                b.push_ref_with_headers(&r, &[("processed", Some(b"weir"))]);
            }
            Output::Replace(b.finish()?)
        }
        _ => {
            let (from, to) = (br#""name":"#.as_slice(), br#""full_name":"#.as_slice());
            let mut b = BatchBuilder::with_capacity(batch.len(), input.len() + batch.len() * 5);
            for r in batch.iter() {
                let renamed = r.value().and_then(|v| {
                    let pos = v.windows(from.len()).position(|w| w == from)?;
                    let mut out = Vec::with_capacity(v.len() + to.len());
                    out.extend_from_slice(&v[..pos]);
                    out.extend_from_slice(to);
                    out.extend_from_slice(&v[pos + from.len()..]);
                    Some(out)
                });
                match renamed {
                    Some(v) => b.push_ref_with_value(&r, Some(&v)),
                    None => b.push_ref(&r),
                }
            }
            Output::Replace(b.finish()?)
        }
    })
}

/// Runs `f` on one batch of `records` for about `budget`, three times; records/s (median).
fn measure(
    records: usize,
    budget: Duration,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < budget {
            f()?;
            n += records;
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    Ok(rates[1])
}

const WORKLOADS: [&str; 4] = ["identity", "filter", "add-header", "json-rewrite"];
const BATCHES: [usize; 3] = [100, 1000, 10_000];
const VALUES: [usize; 3] = [16, 256, 4096];

fn file_for(dir: &Path, language: &str, workload: &str) -> PathBuf {
    match language {
        "rust" => dir.join(format!("{}.wasm", workload.replace('-', "_"))),
        other => dir.join(format!("{other}-{workload}.wasm")),
    }
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else {
        format!("{:.1}k", r / 1e3)
    }
}

/// The output a guest gave, as the records it stands for (to check it did the work).
fn records_of(input: &[u8], out: Output) -> anyhow::Result<Vec<(Option<Vec<u8>>, usize)>> {
    let bytes = weir_host::output_batch(input, out)?;
    Ok(Batch::parse(&bytes)?
        .iter()
        .map(|r| (r.value().map(<[u8]>::to_vec), r.headers().len()))
        .collect())
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let BenchCmd::Plugin { dir, quick, only } = cmd else {
        anyhow::bail!("weir bench pipeline runs on the async runtime (see main)");
    };
    let budget = Duration::from_millis(if quick { 60 } else { 300 });
    let cache = tempfile_dir()?;
    let cfg = HostConfig {
        cache_dir: Some(cache.clone()),
        memory_limit: 1 << 30,
        call_deadline: Duration::from_secs(60),
    };
    // Some guest toolchains leak per call (componentize-py): recycle as a pipeline would.
    let tc = TaskConfig {
        recycle_above_memory: Some(256 << 20),
        ..TaskConfig::default()
    };
    let rename_cfg = [
        ("from".to_string(), "name".to_string()),
        ("to".to_string(), "full_name".to_string()),
    ];
    let mut languages = Vec::new();
    for language in ["rust", "python", "js"] {
        let missing: Vec<PathBuf> = WORKLOADS
            .iter()
            .map(|w| file_for(&dir, language, w))
            .filter(|p| !p.exists())
            .collect();
        if missing.is_empty() {
            languages.push(language);
        } else {
            println!("{language}: skipped ({} not found)", missing[0].display());
        }
    }
    anyhow::ensure!(
        !languages.is_empty(),
        "no guest components in {}",
        dir.display()
    );

    println!("component load (json-rewrite): cold compile vs cached load from disk");
    let mut tasks = Vec::new();
    for language in &languages {
        let path = file_for(&dir, language, "json-rewrite");
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let cold = Host::new(cfg.clone())?;
        let t = Instant::now();
        cold.load_bytes("json-rewrite", &bytes)?;
        let compile = t.elapsed();
        drop(cold);
        let host = Host::new(cfg.clone())?;
        let t = Instant::now();
        host.load_bytes("json-rewrite", &bytes)?;
        let cached = t.elapsed();
        anyhow::ensure!(host.compilations() == 0, "the cached load compiled again");
        println!(
            "  {:<7} {:>6.0} KiB  compile {:>8.1} ms  cached {:>6.2} ms  ({:.0}x)",
            language,
            bytes.len() as f64 / 1024.0,
            compile.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            compile.as_secs_f64() / cached.as_secs_f64()
        );
        let mut per = Vec::new();
        for w in WORKLOADS {
            let plugin = host.load(&file_for(&dir, language, w))?;
            let config: &[(String, String)] = if w == "json-rewrite" {
                &rename_cfg
            } else {
                &[]
            };
            per.push(plugin.transform(&host, config, &tc)?);
        }
        tasks.push((host, per));
    }

    println!();
    print!(
        "{:<13} {:>6} {:>6} {:>9}",
        "transform", "batch", "value", "native"
    );
    for l in &languages {
        print!(" {:>17}", format!("{l} (x native)"));
    }
    println!();
    let mut at_goal: Vec<(String, String, f64, f64)> = Vec::new();
    for (wi, w) in WORKLOADS.iter().enumerate() {
        if !only.is_empty() && !only.iter().any(|o| o == w) {
            continue;
        }
        for size in BATCHES {
            for value in VALUES {
                let input = input(size, value);
                let expected = records_of(&input, native(w, &input)?)?;
                let nat = measure(size, budget, || {
                    std::hint::black_box(native(w, &input)?);
                    Ok(())
                })?;
                print!("{w:<13} {size:>6} {value:>6} {:>9}", rate(nat));
                for (l, (_, per)) in languages.iter().zip(&mut tasks) {
                    let task = &mut per[wi];
                    // Every guest must really do the work: its output is the native one.
                    let got = records_of(&input, task.apply(&input)?)?;
                    anyhow::ensure!(got == expected, "{l} {w} did not give the native output");
                    let guest = measure(size, budget, || {
                        std::hint::black_box(task.apply(&input)?);
                        Ok(())
                    })?;
                    print!(" {:>17}", format!("{} ({:.2}x)", rate(guest), nat / guest));
                    if size == 1000 && value == 256 {
                        at_goal.push((l.to_string(), w.to_string(), guest, nat / guest));
                    }
                }
                println!();
            }
        }
    }
    println!();
    println!("goals at batch 1,000 with 256-byte values:");
    for (l, w, guest, x) in &at_goal {
        let limit = match (l.as_str(), w.as_str()) {
            ("rust", "identity" | "filter") => 1.1,
            ("rust", _) => 1.3,
            (_, "add-header") => 10.0,
            (_, "json-rewrite") => 15.0,
            _ => continue,
        };
        println!(
            "  {l:<7} {w:<13} {:>9} rec/s  {x:>6.2}x native  goal <= {limit}x: {}",
            rate(*guest),
            if *x <= limit { "met" } else { "MISSED" }
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("weir-bench-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
