//! Numbers records across batches with a counter kept in host state, and logs each batch.
use weir_sdk::{Descriptor, Error, Header, Level, PluginKind, Record, Transform};

struct Counter;

impl Transform for Counter {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("stateful", "0.1.0", PluginKind::Transform, "Numbers records with host state")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Counter)
    }
    fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        let mut n = weir_sdk::state_get("n").map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0);
        for r in &mut batch {
            r.headers.push(Header { name: "seq".into(), value: Some(n.to_string().into_bytes()) });
            n += 1;
        }
        weir_sdk::state_set("n", &n.to_le_bytes());
        weir_sdk::log(Level::Info, &format!("numbered {} records", batch.len()));
        Ok(batch)
    }
}

weir_sdk::export_transform!(Counter);
