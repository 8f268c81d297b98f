//! Returns every batch unchanged: the cost of crossing the boundary and nothing else.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Identity;

impl Transform for Identity {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("identity", "0.1.0", PluginKind::Transform, "Returns records unchanged")
    }
    fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Identity)
    }
    fn apply(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        Ok(batch)
    }
}

weir_sdk::export_transform!(Identity);
