//! Allocates 1 MiB per record and keeps it, past any sensible memory cap.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Hog(Vec<Vec<u8>>);

impl Transform for Hog {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("hog", "0.1.0", PluginKind::Transform, "Allocates without bound")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Hog(Vec::new()))
    }
    fn apply(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        for _ in 0..batch.len() {
            self.0.push(vec![1u8; 1 << 20]);
        }
        Ok(batch)
    }
}

weir_sdk::export_transform!(Hog);
