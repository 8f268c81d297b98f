//! A broken transform: `apply` returns a batch whose first record claims a value far past the
//! end of the data arena, or (`mode=select`) selects a record the batch does not have. The
//! host must refuse both with the precise field, never read them.
use weir_sdk::{
    Batch, BatchBuilder, Config, Descriptor, Error, Output, PluginKind, RecordData, Transform,
};

struct Corrupt(bool);

impl Transform for Corrupt {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "corrupt",
            "0.2.0",
            PluginKind::Transform,
            "Returns a malformed batch",
        );
        d.config.push(weir_sdk::config_key(
            "mode",
            weir_sdk::ConfigType::String,
            false,
            Some("replace"),
            "replace or select",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        Ok(Corrupt(
            weir_sdk::config_get(&config, "mode") == Some("select"),
        ))
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        if self.0 {
            return Ok(Output::Select(vec![0, batch.len() as u32 + 5]));
        }
        let mut b = BatchBuilder::new();
        b.push(&RecordData {
            value: Some(b"honest"),
            ..Default::default()
        });
        let mut bytes = b.finish().map_err(|e| Error::Fatal(e.to_string()))?;
        // The first record's value length (record entry at 40, value pair at +16, length +4).
        bytes[60..64].copy_from_slice(&1_000_000u32.to_le_bytes());
        Ok(Output::Replace(bytes))
    }
}

weir_sdk::export_transform!(Corrupt);
