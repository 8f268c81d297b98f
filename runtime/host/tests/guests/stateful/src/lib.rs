//! Numbers records across batches with a counter kept in host state, and logs each batch.
use weir_sdk::{Descriptor, Error, Header, Level, PluginKind, Record, Transform};

struct Counter {
    /// `fill=true`: every batch stores 1 MiB values under new keys until the host refuses.
    fill: bool,
}

impl Transform for Counter {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("stateful", "0.1.0", PluginKind::Transform, "Numbers records with host state")
    }
    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        // `once=true`: refuses a second open in the same task (state survives recycling).
        if weir_sdk::config_get(&config, "once") == Some("true") {
            if weir_sdk::state_get("opened").is_some() {
                return Err(Error::Fatal("opened twice".into()));
            }
            weir_sdk::state_set("opened", b"1").map_err(Error::Fatal)?;
        }
        Ok(Counter { fill: weir_sdk::config_get(&config, "fill") == Some("true") })
    }
    fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        if self.fill {
            let big = vec![0u8; 1 << 20];
            for i in 0.. {
                weir_sdk::state_set(&format!("fill-{i}"), &big).map_err(Error::Fatal)?;
            }
        }
        let mut n = weir_sdk::state_get("n").map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0);
        for r in &mut batch {
            r.headers.push(Header { name: "seq".into(), value: Some(n.to_string().into_bytes()) });
            n += 1;
        }
        weir_sdk::state_set("n", &n.to_le_bytes()).map_err(Error::Fatal)?;
        weir_sdk::log(Level::Info, &format!("numbered {} records", batch.len()));
        Ok(batch)
    }
}

weir_sdk::export_transform!(Counter);
