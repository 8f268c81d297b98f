//! Loops forever on every batch.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Spin(u64);

impl Transform for Spin {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("spin", "0.2.0", PluginKind::Transform, "Loops forever")
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Spin(0))
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        loop {
            self.0 = std::hint::black_box(self.0.wrapping_add(1));
        }
    }
}

weir_sdk::export_transform!(Spin);
