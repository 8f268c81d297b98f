//! Never returns from `apply`.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Spin(u64);

impl Transform for Spin {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("spin", "0.1.0", PluginKind::Transform, "Loops forever")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Spin(0))
    }
    fn apply(&mut self, _batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        loop {
            self.0 = std::hint::black_box(self.0.wrapping_add(1));
        }
    }
}

weir_sdk::export_transform!(Spin);
