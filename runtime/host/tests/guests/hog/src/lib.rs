//! Allocates 1 MiB per record and keeps it, past any sensible memory cap.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Hog(Vec<Vec<u8>>);

impl Transform for Hog {
    fn describe() -> Descriptor {
        weir_sdk::descriptor(
            "hog",
            "0.2.0",
            PluginKind::Transform,
            "Allocates without bound",
        )
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Hog(Vec::new()))
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        for _ in 0..batch.len() {
            self.0.push(vec![1u8; 1 << 20]);
        }
        Ok(Output::Passthrough)
    }
}

weir_sdk::export_transform!(Hog);
