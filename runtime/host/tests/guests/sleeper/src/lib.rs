//! Sleeps for an hour in every batch: blocked in a host call, not spinning in wasm.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Sleeper;

impl Transform for Sleeper {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("sleeper", "0.2.0", PluginKind::Transform, "Sleeps")
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Sleeper)
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(Output::Passthrough)
    }
}

weir_sdk::export_transform!(Sleeper);
