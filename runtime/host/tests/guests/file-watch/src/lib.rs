//! Watches `dir` (under a granted directory) and emits one record per change event, its
//! value `<created|modified|removed> <path>`.
use weir_sdk::{Change, Descriptor, Error, Offsets, PluginKind, Record, Source};

struct FileWatch;

impl Source for FileWatch {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("file-watch", "0.1.0", PluginKind::Source, "File change events")
    }
    fn open(config: Vec<(String, String)>, _committed: Offsets) -> Result<Self, Error> {
        let dir = weir_sdk::config_required(&config, "dir")?;
        weir_sdk::watch(dir, true).map_err(Error::Fatal)?;
        Ok(FileWatch)
    }
    fn poll(&mut self, max: u32) -> Result<Vec<Record>, Error> {
        Ok(weir_sdk::watch_events(max)
            .into_iter()
            .map(|e| {
                let change = match e.change {
                    Change::Created => "created",
                    Change::Modified => "modified",
                    Change::Removed => "removed",
                };
                Record {
                    key: None,
                    value: Some(format!("{change} {}", e.path).into_bytes()),
                    headers: Vec::new(),
                    timestamp: 0,
                    topic: String::new(),
                    partition: None,
                    position: None,
                    source_partition: None,
                    source_offset: None,
                }
            })
            .collect())
    }
}

weir_sdk::export_source!(FileWatch);
