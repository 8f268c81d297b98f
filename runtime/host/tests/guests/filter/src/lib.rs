//! Keeps the records with an even index in their batch (`select`): a filter's cost.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Filter;

impl Transform for Filter {
    fn describe() -> Descriptor {
        weir_sdk::descriptor(
            "filter",
            "0.2.0",
            PluginKind::Transform,
            "Keeps every other record",
        )
    }
    fn open(_config: Config) -> Result<Self, Error> {
        Ok(Filter)
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        Ok(weir_sdk::output::keep_if(batch, |r| r.index() % 2 == 0))
    }
}

weir_sdk::export_transform!(Filter);
