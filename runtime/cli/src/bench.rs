//! `weir bench plugin`: records/s through an identity transform and a small JSON field rename
//! in each guest language (Rust, Python, JavaScript), at batch sizes 1, 100 and 1000, against
//! the same logic as native Rust measured in the same run; and cold compile versus cached
//! load time. Prints a table; never fails on a timing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use weir_host::types::{Header, Record};
use weir_host::{Host, HostConfig, TaskConfig};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Plugin throughput per guest language against native Rust, and compile vs cached load.
    Plugin {
        /// Directory with the components: identity.wasm and json_rewrite.wasm (Rust), and
        /// python-identity.wasm, python-json-rewrite.wasm, js-identity.wasm,
        /// js-json-rewrite.wasm (scripts/bench-plugin builds and gathers them).
        #[arg(long)]
        dir: PathBuf,
        /// Measure for 100 ms per figure instead of 500 ms.
        #[arg(long)]
        quick: bool,
    },
}

fn rec(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(
            format!(
                r#"{{"name":"user-{i}","age":{},"city":"somewhere"}}"#,
                i % 90
            )
            .into_bytes(),
        ),
        headers: vec![Header {
            name: "source".into(),
            value: Some(b"bench".to_vec()),
        }],
        timestamp: 1_700_000_000_000 + i as i64,
        topic: String::new(),
        partition: None,
        position: None,
        source_partition: None,
        source_offset: None,
    }
}

/// The rename the json-rewrite guests do, natively: the first `"from":` becomes `"to":`.
fn native_rename(mut batch: Vec<Record>, from: &[u8], to: &[u8]) -> Vec<Record> {
    for r in &mut batch {
        if let Some(v) = r.value.as_mut()
            && let Some(pos) = v.windows(from.len()).position(|w| w == from)
        {
            v.splice(pos..pos + from.len(), to.iter().copied());
        }
    }
    batch
}

/// Runs `f` on batches of `size` for about `budget`, three times; records/s (the median).
fn measure(
    size: usize,
    budget: Duration,
    mut f: impl FnMut(&[Record]) -> anyhow::Result<usize>,
) -> anyhow::Result<f64> {
    let batch: Vec<Record> = (0..size).map(rec).collect();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < budget {
            n += f(&batch)?;
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    Ok(rates[1])
}

const SIZES: [usize; 3] = [1, 100, 1000];

struct Guest {
    language: &'static str,
    identity: PathBuf,
    rewrite: PathBuf,
}

fn guests(dir: &Path) -> Vec<Guest> {
    vec![
        Guest {
            language: "rust",
            identity: dir.join("identity.wasm"),
            rewrite: dir.join("json_rewrite.wasm"),
        },
        Guest {
            language: "python",
            identity: dir.join("python-identity.wasm"),
            rewrite: dir.join("python-json-rewrite.wasm"),
        },
        Guest {
            language: "js",
            identity: dir.join("js-identity.wasm"),
            rewrite: dir.join("js-json-rewrite.wasm"),
        },
    ]
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else {
        format!("{:.1}k", r / 1e3)
    }
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let BenchCmd::Plugin { dir, quick } = cmd;
    let budget = Duration::from_millis(if quick { 100 } else { 500 });
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
    let present: Vec<Guest> = guests(&dir)
        .into_iter()
        .filter(|g| {
            let ok = g.identity.exists() && g.rewrite.exists();
            if !ok {
                println!(
                    "{}: skipped ({} or {} not found)",
                    g.language,
                    g.identity.display(),
                    g.rewrite.display()
                );
            }
            ok
        })
        .collect();
    anyhow::ensure!(
        !present.is_empty(),
        "no guest components in {}",
        dir.display()
    );

    println!("component load (json-rewrite): cold compile vs cached load from disk");
    let mut hosts = Vec::new();
    for g in &present {
        let bytes = std::fs::read(&g.rewrite)
            .with_context(|| format!("cannot read {}", g.rewrite.display()))?;
        let cold = Host::new(cfg.clone())?;
        let t = Instant::now();
        cold.load_bytes("json-rewrite", &bytes)?;
        let compile = t.elapsed();
        drop(cold);
        let warm = Host::new(cfg.clone())?;
        let t = Instant::now();
        warm.load_bytes("json-rewrite", &bytes)?;
        let cached = t.elapsed();
        anyhow::ensure!(warm.compilations() == 0, "the cached load compiled again");
        println!(
            "  {:<7} {:>6.0} KiB  compile {:>8.1} ms  cached {:>6.2} ms  ({:.0}x)",
            g.language,
            bytes.len() as f64 / 1024.0,
            compile.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            compile.as_secs_f64() / cached.as_secs_f64()
        );
        // Both plugins of this language, loaded once for every row below.
        let identity = warm.load(&g.identity)?;
        let rewrite = warm.load_bytes("json-rewrite", &bytes)?;
        hosts.push((warm, identity, rewrite));
    }

    println!();
    print!("{:<13} {:>5} {:>9}", "transform", "batch", "native");
    for g in &present {
        print!(" {:>18}", format!("{} (x slower)", g.language));
    }
    println!();
    for (name, is_rename) in [("identity", false), ("json-rewrite", true)] {
        for size in SIZES {
            let native = if is_rename {
                measure(size, budget, |b| {
                    Ok(std::hint::black_box(native_rename(
                        b.to_vec(),
                        br#""name":"#,
                        br#""full_name":"#,
                    ))
                    .len())
                })?
            } else {
                measure(size, budget, |b| Ok(std::hint::black_box(b.to_vec()).len()))?
            };
            print!("{name:<13} {size:>5} {:>9}", rate(native));
            for (g, (host, identity, rewrite)) in present.iter().zip(&hosts) {
                let plugin = if is_rename { rewrite } else { identity };
                let config = if is_rename { &rename_cfg[..] } else { &[] };
                let mut task = plugin.transform(host, config, &tc)?;
                // The rename must really happen in every language.
                let check = task.apply(&[rec(1)])?;
                anyhow::ensure!(
                    !is_rename
                        || check[0].value.as_deref()
                            == Some(&br#"{"full_name":"user-1","age":1,"city":"somewhere"}"#[..]),
                    "{} json-rewrite gave {:?}",
                    g.language,
                    check[0].value.as_deref().map(String::from_utf8_lossy)
                );
                let guest = measure(size, budget, |b| Ok(task.apply(b)?.len()))?;
                print!(
                    " {:>18}",
                    format!("{} ({:.1}x)", rate(guest), native / guest)
                );
            }
            println!();
        }
    }
    println!();
    println!(
        "goals at batch 1000: rust within 1.5x of native; python >= 100k rec/s; js >= 50k rec/s"
    );
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("weir-bench-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
