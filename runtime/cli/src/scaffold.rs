//! `weir plugin new DIR --kind transform|source|sink`: a Rust plugin project that builds
//! anywhere. The SDK, the batch crate and the WIT contract this binary was built with are
//! written into the project (`.weir/`), so nothing points back at a Weir checkout: copy the
//! directory wherever you like, `cargo build --release --target wasm32-wasip2`, and run the
//! component with `weir plugin run`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The files of the SDK, the batch crate and the contract, at the paths the SDK expects them
/// relative to each other (`sdk/rust` reads `../../wit` and `../../runtime/batch`).
const VENDORED: &[(&str, &str)] = &[
    (
        "sdk/rust/Cargo.toml",
        include_str!("../../../sdk/rust/Cargo.toml"),
    ),
    (
        "sdk/rust/src/lib.rs",
        include_str!("../../../sdk/rust/src/lib.rs"),
    ),
    (
        "sdk/rust/src/host.rs",
        include_str!("../../../sdk/rust/src/host.rs"),
    ),
    (
        "sdk/rust/src/output.rs",
        include_str!("../../../sdk/rust/src/output.rs"),
    ),
    (
        "sdk/rust/src/sql.rs",
        include_str!("../../../sdk/rust/src/sql.rs"),
    ),
    (
        "runtime/sqlbuf/src/lib.rs",
        include_str!("../../sqlbuf/src/lib.rs"),
    ),
    (
        "runtime/sqlbuf/src/changes.rs",
        include_str!("../../sqlbuf/src/changes.rs"),
    ),
    (
        "runtime/batch/src/lib.rs",
        include_str!("../../batch/src/lib.rs"),
    ),
    (
        "runtime/batch/src/view.rs",
        include_str!("../../batch/src/view.rs"),
    ),
    (
        "runtime/batch/src/builder.rs",
        include_str!("../../batch/src/builder.rs"),
    ),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/host.wit", include_str!("../../../wit/host.wit")),
    ("wit/worlds.wit", include_str!("../../../wit/worlds.wit")),
    ("wit/sql.wit", include_str!("../../../wit/sql.wit")),
];

/// The rows crate's manifest outside Weir's workspace.
const SQLBUF_MANIFEST: &str = r#"[package]
name = "weir-sqlbuf"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"

[dependencies]
"#;

/// The batch crate's manifest outside Weir's workspace (the real one inherits from it).
const BATCH_MANIFEST: &str = r#"[package]
name = "weir-batch"
version = "0.2.0"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"

[dependencies]
"#;

const TRANSFORM: &str = include_str!("../../../sdk/rust/template/src/lib.rs");

const SOURCE: &str = r#"//! A source: counts up to `count`, one record per number, resuming after the committed offset.
use weir_sdk::{BatchBuilder, Config, ConfigType, Descriptor, Error, Offsets, PluginKind, RecordData, Source};

struct Counter {
    next: u64,
    count: u64,
}

impl Source for Counter {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("NAME", "0.1.0", PluginKind::Source, "Counts");
        d.config.push(weir_sdk::config_key("count", ConfigType::Long, false, Some("10"), "how many records"));
        d
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let count = weir_sdk::config_get(&config, "count").unwrap_or("10").parse().unwrap_or(10);
        let next = committed.iter().find_map(|(_, o)| std::str::from_utf8(o).ok()?.parse::<u64>().ok()).map_or(0, |n| n + 1);
        Ok(Counter { next, count })
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let end = (self.next + u64::from(max)).min(self.count);
        for i in self.next..end {
            let (value, offset) = (format!("{{\"n\":{i}}}"), i.to_string());
            out.push(&RecordData { value: Some(value.as_bytes()), source_partition: Some(b"count"), source_offset: Some(offset.as_bytes()), ..Default::default() });
        }
        self.next = end.max(self.next);
        Ok(())
    }
}

weir_sdk::export_source!(Counter);
"#;

const SINK: &str = r#"//! A sink: logs every record it is given; everything is durable as soon as it is logged.
use weir_sdk::{Batch, Config, Descriptor, Error, Level, LogPosition, PluginKind, Sink};

struct Logger;

impl Sink for Logger {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("NAME", "0.1.0", PluginKind::Sink, "Logs records")
    }

    fn open(_config: Config, _committed: Vec<LogPosition>) -> Result<Self, Error> {
        Ok(Logger)
    }

    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        for r in batch.iter() {
            let value = String::from_utf8_lossy(r.value().unwrap_or_default());
            weir_sdk::log(Level::Info, &format!("{}/{}/{}: {value}", r.topic(), r.partition().unwrap_or(-1), r.offset().unwrap_or(-1)));
        }
        Ok(())
    }

    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error> {
        Ok(up_to)
    }
}

weir_sdk::export_sink!(Logger);
"#;

/// What `weir plugin new` writes; returns the component's path once built.
pub fn new_project(dir: &Path, kind: &str) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .with_context(|| {
            format!(
                "{}: the directory's name is the crate's name: use letters, digits, '-' and '_'",
                dir.display()
            )
        })?
        .to_string();
    let source = match kind {
        "transform" => TRANSFORM.replace("\"my-transform\"", &format!("{name:?}")),
        "source" => SOURCE.replace("\"NAME\"", &format!("{name:?}")),
        "sink" => SINK.replace("\"NAME\"", &format!("{name:?}")),
        other => anyhow::bail!("--kind must be transform, source or sink, not {other:?}"),
    };
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!("{} exists and is not empty", dir.display());
    }
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    for (rel, text) in VENDORED {
        write(&format!(".weir/{rel}"), text)?;
    }
    write(".weir/runtime/batch/Cargo.toml", BATCH_MANIFEST)?;
    write(".weir/runtime/sqlbuf/Cargo.toml", SQLBUF_MANIFEST)?;
    write(
        "Cargo.toml",
        &format!(
            r#"# A Weir {kind} plugin. Build: cargo build --release --target wasm32-wasip2
# The SDK and the contract it was made with are in .weir/ (written by `weir plugin new`).
[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-sdk = {{ path = ".weir/sdk/rust", features = ["{kind}"] }}

[profile.release]
opt-level = 3
strip = true

# Standalone: not part of any enclosing workspace.
[workspace]
"#
        ),
    )?;
    write("src/lib.rs", &source)?;
    write(".gitignore", "/target\n")?;
    Ok(PathBuf::from("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}
