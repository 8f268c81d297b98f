//! Renames one top-level JSON field (`from` -> `to`, from the config) and reports a record
//! whose value is not a JSON object as a bad record (by index), without a JSON library: a
//! small byte-level rewrite of the first occurrence.
use weir_sdk::{Batch, Config, ConfigType, Descriptor, Error, Output, PluginKind, Transform};

struct Rename {
    from: Vec<u8>,
    to: Vec<u8>,
}

impl Transform for Rename {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "json-rewrite",
            "0.2.0",
            PluginKind::Transform,
            "Renames a top-level JSON field",
        );
        d.config.push(weir_sdk::config_key(
            "from",
            ConfigType::String,
            true,
            None,
            "field to rename",
        ));
        d.config.push(weir_sdk::config_key(
            "to",
            ConfigType::String,
            true,
            None,
            "its new name",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        let from = weir_sdk::config_required(&config, "from")?;
        let to = weir_sdk::config_required(&config, "to")?;
        Ok(Rename {
            from: format!("\"{from}\":").into_bytes(),
            to: format!("\"{to}\":").into_bytes(),
        })
    }
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        weir_sdk::output::map_values(batch, |r| {
            let Some(v) = r.value() else { return Ok(None) };
            if v.first() != Some(&b'{') {
                return Err(weir_sdk::bad_record(
                    r.index(),
                    "value is not a JSON object",
                ));
            }
            Ok(v.windows(self.from.len())
                .position(|w| w == self.from.as_slice())
                .map(|pos| {
                    let mut out = Vec::with_capacity(v.len() + self.to.len());
                    out.extend_from_slice(&v[..pos]);
                    out.extend_from_slice(&self.to);
                    out.extend_from_slice(&v[pos + self.from.len()..]);
                    out
                }))
        })
    }
}

weir_sdk::export_transform!(Rename);
