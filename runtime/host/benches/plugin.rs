//! `cargo bench -p weir-host`: records/s through the Rust guest fixtures (identity and a JSON
//! field rename) at batch sizes 1, 100 and 1000, against the same logic as native Rust in the
//! same run, and cold compile versus cached load time. Prints a table; never fails on timing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_host::types::{Header, Record};
use weir_host::{Host, HostConfig};

fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WEIR_GUESTS_DIR")).join(format!("{name}.wasm"))
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

/// The JSON rename the json-rewrite guest does, natively.
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

/// Runs `f` on batches of `size` for about `budget`, returning records/s (median of 3).
fn measure(size: usize, budget: Duration, mut f: impl FnMut(&[Record]) -> usize) -> f64 {
    let batch: Vec<Record> = (0..size).map(rec).collect();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < budget {
            n += f(&batch);
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[1]
}

fn main() {
    let budget = Duration::from_millis(if std::env::args().any(|a| a == "--quick") {
        100
    } else {
        400
    });
    let cache = tempfile::tempdir().expect("temp dir");
    let cfg = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        memory_limit: 256 << 20,
        call_deadline: Duration::from_secs(30),
    };

    let bytes = std::fs::read(guest("json_rewrite")).expect("guest built by build.rs");
    let cold = Host::new(cfg.clone()).expect("host");
    let t = Instant::now();
    cold.load_bytes("json-rewrite", &bytes).expect("load");
    let compile = t.elapsed();
    drop(cold);
    let warm = Host::new(cfg).expect("host");
    let t = Instant::now();
    warm.load_bytes("json-rewrite", &bytes).expect("load");
    let cached = t.elapsed();
    println!(
        "component load: cold compile {:.1} ms, cached load {:.2} ms ({:.0}x faster)",
        compile.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3,
        compile.as_secs_f64() / cached.as_secs_f64()
    );
    println!();
    println!(
        "{:<14} {:>6} {:>14} {:>14} {:>8}   goal: Rust guest within 1.5x of native at batch 1000",
        "transform", "batch", "native rec/s", "guest rec/s", "native/guest"
    );

    let host = &warm;
    let identity = host.load(&guest("identity")).expect("identity");
    let rewrite = host
        .load_bytes("json-rewrite", &bytes)
        .expect("json-rewrite");
    let cfg = vec![
        ("from".to_string(), "name".to_string()),
        ("to".to_string(), "full_name".to_string()),
    ];
    for size in [1usize, 100, 1000] {
        let mut task = identity.transform(host, &[]).expect("open");
        let native = measure(size, budget, |b| std::hint::black_box(b.to_vec()).len());
        let guest = measure(size, budget, |b| task.apply(b).expect("apply").len());
        println!(
            "{:<14} {:>6} {:>14.0} {:>14.0} {:>7.2}x",
            "identity",
            size,
            native,
            guest,
            native / guest
        );
    }
    for size in [1usize, 100, 1000] {
        let mut task = rewrite.transform(host, &cfg).expect("open");
        let native = measure(size, budget, |b| {
            native_rename(b.to_vec(), br#""name":"#, br#""full_name":"#).len()
        });
        let guest = measure(size, budget, |b| task.apply(b).expect("apply").len());
        println!(
            "{:<14} {:>6} {:>14.0} {:>14.0} {:>7.2}x",
            "json-rewrite",
            size,
            native,
            guest,
            native / guest
        );
    }
    println!();
    println!("Python and JavaScript guests: not built yet (see the issue note).");
}
