//! Adds the header `processed: weir` to every record (a new batch, records copied by range).
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct AddHeader;

impl Transform for AddHeader {
    fn describe() -> Descriptor {
        weir_sdk::descriptor(
            "add-header",
            "0.2.0",
            PluginKind::Transform,
            "Adds a header to every record",
        )
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(AddHeader)
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        weir_sdk::output::add_header(batch, "processed", Some(b"weir"))
    }
}

weir_sdk::export_transform!(AddHeader);
