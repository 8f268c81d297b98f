//! Panics on every batch.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Trap;

impl Transform for Trap {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("trap", "0.2.0", PluginKind::Transform, "Panics")
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Trap)
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        panic!("deliberate panic in the trap fixture")
    }
}

weir_sdk::export_transform!(Trap);
