//! Numbers records across batches with a counter kept in host state (header `seq`), so it
//! survives recycling; `once=true` refuses a second open in one task; `fill=true` fills the
//! state until the host refuses.
use weir_sdk::{
    Batch, BatchBuilder, Config, Descriptor, Error, Level, Output, PluginKind, Transform,
};

struct Counter {
    fill: bool,
}

impl Transform for Counter {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "stateful",
            "0.2.0",
            PluginKind::Transform,
            "Numbers records with host state",
        );
        d.config.push(weir_sdk::config_key(
            "once",
            weir_sdk::ConfigType::Boolean,
            false,
            Some("false"),
            "refuse a second open",
        ));
        d.config.push(weir_sdk::config_key(
            "fill",
            weir_sdk::ConfigType::Boolean,
            false,
            Some("false"),
            "fill the state",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        if weir_sdk::config_get(&config, "once") == Some("true") {
            if weir_sdk::state_get("opened").is_some() {
                return Err(Error::Fatal("opened twice".into()));
            }
            weir_sdk::state_set("opened", b"1").map_err(Error::Fatal)?;
        }
        Ok(Counter {
            fill: weir_sdk::config_get(&config, "fill") == Some("true"),
        })
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        if self.fill {
            let big = vec![0u8; 1 << 20];
            for i in 0.. {
                weir_sdk::state_set(&format!("fill-{i}"), &big).map_err(Error::Fatal)?;
            }
        }
        let mut n = weir_sdk::state_get("n")
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let mut b = BatchBuilder::new();
        for r in batch.iter() {
            let seq = n.to_string();
            b.push_ref_with_headers(&r, &[("seq", Some(seq.as_bytes()))]);
            n += 1;
        }
        weir_sdk::state_set("n", &n.to_le_bytes()).map_err(Error::Fatal)?;
        weir_sdk::log(Level::Info, &format!("numbered {} records", batch.len()));
        Ok(Output::Replace(
            b.finish().map_err(|e| Error::Fatal(e.to_string()))?,
        ))
    }
}

weir_sdk::export_transform!(Counter);
