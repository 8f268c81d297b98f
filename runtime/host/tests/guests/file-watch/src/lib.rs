//! Watches `dir` (under a granted directory) and emits one record per change event, its
//! value `<created|modified|removed> <path>`.
use weir_sdk::{
    BatchBuilder, Change, Config, Descriptor, Error, Offsets, PluginKind, RecordData, Source,
};

struct FileWatch;

impl Source for FileWatch {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "file-watch",
            "0.2.0",
            PluginKind::Source,
            "File change events",
        );
        d.config.push(weir_sdk::config_key(
            "dir",
            weir_sdk::ConfigType::String,
            true,
            None,
            "directory to watch",
        ));
        d
    }
    fn open(config: Config, _committed: Offsets) -> Result<Self, Error> {
        let dir = weir_sdk::config_required(&config, "dir")?;
        weir_sdk::watch(dir, true).map_err(Error::Fatal)?;
        Ok(FileWatch)
    }
    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        for e in weir_sdk::watch_events(max) {
            let change = match e.change {
                Change::Created => "created",
                Change::Modified => "modified",
                Change::Removed => "removed",
            };
            let value = format!("{change} {}", e.path);
            out.push(&RecordData {
                value: Some(value.as_bytes()),
                ..Default::default()
            });
        }
        Ok(())
    }
}

weir_sdk::export_source!(FileWatch);
