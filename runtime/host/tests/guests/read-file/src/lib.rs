//! Reads the file at `path` on every batch and returns its contents as one record: granted
//! directories work, anything else is the plugin's own (fatal) error.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct ReadFile(String);

impl Transform for ReadFile {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("read-file", "0.1.0", PluginKind::Transform, "Reads one file")
    }
    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(ReadFile(weir_sdk::config_required(&config, "path")?.to_string()))
    }
    fn apply(&mut self, _batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        let contents = std::fs::read(&self.0).map_err(|e| Error::Fatal(format!("{}: {e}", self.0)))?;
        Ok(vec![Record {
            key: None,
            value: Some(contents),
            headers: Vec::new(),
            timestamp: 0,
            topic: String::new(),
            partition: None,
            position: None,
            source_partition: None,
            source_offset: None,
        }])
    }
}

weir_sdk::export_transform!(ReadFile);
