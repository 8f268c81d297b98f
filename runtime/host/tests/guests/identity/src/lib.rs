//! Returns every batch unchanged (`passthrough`): the cost of crossing the boundary and
//! nothing else.
use weir_sdk::{Config, Descriptor, Error, PluginKind, Transform};

struct Identity;

impl Transform for Identity {
    fn describe() -> Descriptor {
        weir_sdk::descriptor(
            "identity",
            "0.2.0",
            PluginKind::Transform,
            "Returns records unchanged",
        )
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Identity)
    }
}

weir_sdk::export_transform!(Identity);
