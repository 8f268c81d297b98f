//! Leaks 1 MiB per batch, like guest toolchains that never free, and stamps each record with
//! the calls this instance has served (`instance-calls`) and all calls of the task, counted in
//! host state (`task-calls`), so recycling is visible.
use std::sync::atomic::{AtomicU64, Ordering};

use weir_sdk::{Descriptor, Error, Header, PluginKind, Record, Transform};

static CALLS: AtomicU64 = AtomicU64::new(0);

struct Leaky;

impl Transform for Leaky {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("leaky", "0.1.0", PluginKind::Transform, "Leaks memory")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Leaky)
    }
    fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        std::hint::black_box(Vec::leak(vec![7u8; 1 << 20]));
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let total = weir_sdk::state_get("calls").map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))) + 1;
        weir_sdk::state_set("calls", &total.to_le_bytes()).map_err(Error::Fatal)?;
        for r in &mut batch {
            r.headers.push(Header { name: "instance-calls".into(), value: Some(calls.to_string().into_bytes()) });
            r.headers.push(Header { name: "task-calls".into(), value: Some(total.to_string().into_bytes()) });
        }
        Ok(batch)
    }
}

weir_sdk::export_transform!(Leaky);
