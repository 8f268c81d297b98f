//! Sleeps for an hour in every batch: blocked in a host call, not spinning in wasm.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Sleeper;

impl Transform for Sleeper {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("sleeper", "0.1.0", PluginKind::Transform, "Sleeps")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Sleeper)
    }
    fn apply(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(batch)
    }
}

weir_sdk::export_transform!(Sleeper);
