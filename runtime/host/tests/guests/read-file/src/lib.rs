//! Reads the file at `path` on every batch and returns its contents as one record: granted
//! directories work, anything else is the plugin's own (fatal) error.
use weir_sdk::{
    Batch, BatchBuilder, Config, Descriptor, Error, Output, PluginKind, RecordData, Transform,
};

struct ReadFile(String);

impl Transform for ReadFile {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "read-file",
            "0.2.0",
            PluginKind::Transform,
            "Reads one file",
        );
        d.config.push(weir_sdk::config_key(
            "path",
            weir_sdk::ConfigType::String,
            true,
            None,
            "file to read, under a granted directory",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        Ok(ReadFile(
            weir_sdk::config_required(&config, "path")?.to_string(),
        ))
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        let contents =
            std::fs::read(&self.0).map_err(|e| Error::Fatal(format!("{}: {e}", self.0)))?;
        let mut b = BatchBuilder::new();
        b.push(&RecordData {
            value: Some(&contents),
            ..Default::default()
        });
        Ok(Output::Replace(
            b.finish().map_err(|e| Error::Fatal(e.to_string()))?,
        ))
    }
}

weir_sdk::export_transform!(ReadFile);
