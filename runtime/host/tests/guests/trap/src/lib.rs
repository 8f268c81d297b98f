//! Panics on every batch, or, with `on` set, in its per-record function on the first record
//! whose value is `on` (the SDK then names that record's index).
use weir_sdk::{
    Batch, Config, ConfigType, Descriptor, Error, Output, PluginKind, Transform, Verdict,
};

struct Trap {
    on: Option<Vec<u8>>,
}

impl Transform for Trap {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("trap", "0.2.0", PluginKind::Transform, "Panics");
        d.config.push(weir_sdk::config_key(
            "on",
            ConfigType::String,
            false,
            None,
            "panic at the record with this value",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        Ok(Trap {
            on: weir_sdk::config_get(&config, "on").map(|v| v.as_bytes().to_vec()),
        })
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        let Some(on) = &self.on else {
            panic!("deliberate panic in the trap fixture")
        };
        weir_sdk::output::per_record(batch, |r| {
            if r.value() == Some(on.as_slice()) {
                panic!("deliberate panic at a record in the trap fixture");
            }
            Ok(Verdict::Keep)
        })
    }
}

weir_sdk::export_transform!(Trap);
