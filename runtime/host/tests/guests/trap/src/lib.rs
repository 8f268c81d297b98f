//! Panics on the first batch (a trap in the host).
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Trap;

impl Transform for Trap {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("trap", "0.1.0", PluginKind::Transform, "Panics")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Trap)
    }
    fn apply(&mut self, _batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        panic!("deliberate panic in the trap fixture")
    }
}

weir_sdk::export_transform!(Trap);
