//! A template transform: adds a configured header to every record. Replace `transform`.
use weir_sdk::{Config, ConfigType::String as Text, Descriptor, Error, PluginKind, RecordRef, Transform, Verdict};

struct AddHeader {
    name: String,
    value: Vec<u8>,
}

impl Transform for AddHeader {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("my-transform", "0.1.0", PluginKind::Transform, "Adds a header to every record");
        d.config.push(weir_sdk::config_key("header", Text, true, None, "name of the header to add"));
        d.config.push(weir_sdk::config_key("value", Text, false, Some(""), "its value"));
        d
    }

    fn open(config: Config) -> Result<Self, Error> {
        let name = weir_sdk::config_required(&config, "header")?.to_string();
        let value = weir_sdk::config_get(&config, "value").unwrap_or("").as_bytes().to_vec();
        Ok(AddHeader { name, value })
    }

    fn transform(&mut self, _record: &RecordRef<'_>) -> Result<Verdict, Error> {
        Ok(Verdict::AddHeaders(vec![(self.name.clone(), Some(self.value.clone()))]))
    }
}

weir_sdk::export_transform!(AddHeader);
