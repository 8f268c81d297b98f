//! The on-disk cache of compiled components.
//!
//! A component compiles once per (content hash, engine compatibility hash); the compiled
//! artifact is written as `<cache dir>/<hash>.cwasm` with a temp file and a rename, and later
//! loads deserialize it instead of compiling.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::{Host, HostError};

fn key(host: &Host, bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    host.engine.precompile_compatibility_hash().hash(&mut h);
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}", h.finish())
}

/// Why `bytes` did not compile as a component, in words a plugin author can act on.
fn not_a_component(bytes: &[u8], e: &wasmtime::Error) -> String {
    // A wasm binary starts with `\0asm` and a version: 1 for a core module, 0x0d (layer 1)
    // for a component.
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => "it is a core WebAssembly module, not a component: build it for the wasm32-wasip2 target (cargo build --target wasm32-wasip2), or wrap it with `wasm-tools component new`".into(),
        Some([0, b'a', b's', b'm', ..]) => format!("it does not compile: {}", e.root_cause()),
        _ => "it is not a WebAssembly file (no \\0asm header)".into(),
    }
}

pub(crate) fn load(host: &Host, name: &str, bytes: &[u8]) -> Result<Component, HostError> {
    let cached = host
        .cfg
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.cwasm", key(host, bytes))));
    if let Some(path) = &cached
        && path.exists()
    {
        // SAFETY: the file is one this host wrote itself into its own cache directory, named
        // by the content hash and the engine's compatibility hash; wasmtime also checks the
        // artifact's header against the engine before using it.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(&host.engine, path) } {
            Ok(c) => {
                tracing::debug!(plugin = name, cache = %path.display(), "loaded compiled component from cache");
                return Ok(c);
            }
            Err(e) => {
                tracing::warn!(plugin = name, cache = %path.display(), error = %e, "ignoring unusable cache entry")
            }
        }
    }
    let started = std::time::Instant::now();
    let component = Component::new(&host.engine, bytes).map_err(|e| HostError::Invalid {
        plugin: name.to_string(),
        message: not_a_component(bytes, &e),
    })?;
    host.compiled.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        plugin = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled component"
    );
    if let Some(path) = cached {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let data = component.serialize().map_err(std::io::Error::other)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(plugin = name, error = %e, "cannot write the component cache");
        }
    }
    Ok(component)
}
