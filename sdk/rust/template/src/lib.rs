//! A template transform: adds a header to every record. Replace the body of `apply`.
use weir_sdk::{ConfigType, Descriptor, Error, Header, PluginKind, Record, Transform};

struct AddHeader {
    name: String,
    value: Vec<u8>,
}

impl Transform for AddHeader {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("my-transform", "0.1.0", PluginKind::Transform, "Adds a header to every record");
        d.config = vec![
            weir_sdk::config_key("header", ConfigType::String, true, None, "name of the header to add"),
            weir_sdk::config_key("value", ConfigType::String, false, Some(""), "its value"),
        ];
        d
    }

    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(AddHeader {
            name: weir_sdk::config_required(&config, "header")?.to_string(),
            value: weir_sdk::config_get(&config, "value").unwrap_or("").as_bytes().to_vec(),
        })
    }

    fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        for r in &mut batch {
            r.headers.push(Header { name: self.name.clone(), value: Some(self.value.clone()) });
        }
        Ok(batch)
    }
}

weir_sdk::export_transform!(AddHeader);
