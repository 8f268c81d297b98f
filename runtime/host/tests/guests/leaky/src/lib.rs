//! Leaks 1 MiB per batch, like guest toolchains that never free, and stamps each record with
//! the calls this instance has served (`instance-calls`) and all calls of the task, counted in
//! host state (`task-calls`), so recycling is visible.
use std::sync::atomic::{AtomicU64, Ordering};

use weir_sdk::{Batch, BatchBuilder, Config, Descriptor, Error, Output, PluginKind, Transform};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Leaky;

impl Transform for Leaky {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("leaky", "0.2.0", PluginKind::Transform, "Leaks memory")
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Leaky)
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        std::hint::black_box(Vec::leak(vec![7u8; 1 << 20]));
        let calls = (CALLS.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        let total = weir_sdk::state_get("calls")
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            + 1;
        weir_sdk::state_set("calls", &total.to_le_bytes()).map_err(Error::Fatal)?;
        let total = total.to_string();
        let mut b = BatchBuilder::new();
        for r in batch.iter() {
            b.push_ref_with_headers(
                &r,
                &[
                    ("instance-calls", Some(calls.as_bytes())),
                    ("task-calls", Some(total.as_bytes())),
                ],
            );
        }
        Ok(Output::Replace(
            b.finish().map_err(|e| Error::Fatal(e.to_string()))?,
        ))
    }
}

weir_sdk::export_transform!(Leaky);
