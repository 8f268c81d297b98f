//! Builds the first-party connectors in `connectors/` for wasm32-wasip2 (in their own target
//! directory under OUT_DIR, so the nested cargo never waits on the outer one's lock); the
//! registry embeds them, so a fresh `weir` binary has them.

use std::path::PathBuf;
use std::process::Command;

/// The connectors, one cargo run each: SDK world features unify across one run's packages.
const CONNECTORS: &[(&str, &str)] = &[
    ("file-source", "file_source"),
    ("file-sink", "file_sink"),
    ("datagen", "datagen"),
    ("null-sink", "null_sink"),
    ("sqlite-source", "sqlite_source"),
    ("postgres-source", "postgres_source"),
    ("sql-sink", "sql_sink"),
];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = manifest.join("../../connectors");
    for p in [
        "../../connectors",
        "../../sdk/rust",
        "../../wit",
        "../batch",
        "../sqlbuf",
    ] {
        println!("cargo:rerun-if-changed={}", manifest.join(p).display());
    }
    let target_dir = out.join("connectors");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, file) in CONNECTORS {
        let status = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                package,
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status()
            .expect("cannot run cargo to build the connectors");
        assert!(
            status.success(),
            "building connector {package} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
        let wasm = target_dir.join(format!("wasm32-wasip2/release/{file}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!(
            "cargo:rustc-env=WEIR_CONNECTOR_{}={}",
            file.to_ascii_uppercase(),
            wasm.display()
        );
    }
}
