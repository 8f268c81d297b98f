//! Builds the guest fixtures in `tests/guests` for wasm32-wasip2, in their own target
//! directory under OUT_DIR (so the nested cargo never waits on the outer one's lock), and
//! tells the tests where the components are (`WEIR_GUESTS_DIR`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests = manifest.join("tests/guests");
    for p in [
        "tests/guests",
        "../../sdk/rust",
        "../../wit",
        "../batch",
        "../sqlbuf",
    ] {
        println!("cargo:rerun-if-changed={}", manifest.join(p).display());
    }
    let target_dir = out.join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One cargo run per world: the SDK enables a world per feature, and features unify across
    // the packages of one run (a component built with two worlds would be asked for both).
    let groups: [&[&str]; 3] = [
        &[
            "identity",
            "json-rewrite",
            "trap",
            "spin",
            "hog",
            "stateful",
            "not-a-transform",
            "read-file",
            "http-get",
            "leaky",
            "old-contract",
            "sleeper",
            "socket",
            "filter",
            "add-header",
            "corrupt",
            "sql-shell",
            "contract-020",
        ],
        &["counter-source", "file-watch"],
        &["file-sink"],
    ];
    for group in groups {
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml"));
        for p in group {
            cmd.args(["-p", p]);
        }
        let status = cmd
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status()
            .expect("cannot run cargo to build the guest fixtures");
        assert!(
            status.success(),
            "building the guest fixtures {group:?} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
        );
    }
    // The SDK's template project must keep building as documented (its own workspace).
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest.join("../../sdk/rust/template/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .expect("cannot run cargo to build the SDK template");
    assert!(status.success(), "building sdk/rust/template failed");
    println!(
        "cargo:rustc-env=WEIR_GUESTS_DIR={}",
        target_dir.join("wasm32-wasip2/release").display()
    );
}
