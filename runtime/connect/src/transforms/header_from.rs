//! Kafka's `HeaderFrom$Key`/`$Value`: copies or moves fields into headers (a string as its
//! text, null as a null header, anything else as its compact JSON), appended in `fields`
//! order.

use serde_json::Value;

use crate::ConnectError;
use crate::convert::Data;

/// The transform's config.
#[derive(Debug, Clone)]
pub struct Config {
    /// (field, header) pairs.
    pairs: Vec<(String, String)>,
    moving: bool,
}

/// Reads `fields`, `headers` (as many) and `operation` (`copy` or `move`).
pub fn parse<'a>(
    get: &dyn Fn(&str) -> Option<&'a String>,
    key: &dyn Fn(&str) -> String,
) -> Result<Config, ConnectError> {
    let bad = |k: &str, m: String| ConnectError::BadConfig(format!("{}: {m}", key(k)));
    let list = |k: &str| -> Result<Vec<String>, ConnectError> {
        let l = super::list(get(k));
        if l.is_empty() {
            return Err(bad(k, "missing required configuration".into()));
        }
        Ok(l)
    };
    let (fields, headers) = (list("fields")?, list("headers")?);
    if fields.len() != headers.len() {
        return Err(bad(
            "headers",
            format!(
                "{} headers for {} fields in {}: they pair up by position, so there must be as \
                 many",
                headers.len(),
                fields.len(),
                key("fields")
            ),
        ));
    }
    let moving = match get("operation").map(|s| s.trim()) {
        Some("move") => true,
        Some("copy") => false,
        None | Some("") => return Err(bad("operation", "missing required configuration".into())),
        Some(other) => {
            return Err(bad(
                "operation",
                format!("invalid value {other:?} (valid: copy, move)"),
            ));
        }
    };
    Ok(Config {
        pairs: fields.into_iter().zip(headers).collect(),
        moving,
    })
}

/// Adds the headers from `data` (not null) to `headers`, removing the fields on `move`.
pub fn apply(
    c: &Config,
    data: &mut Data,
    headers: &mut Vec<(String, Option<Vec<u8>>)>,
) -> Result<(), String> {
    let (schema, value) = data.structured("HeaderFrom")?;
    let obj = value
        .as_object_mut()
        .ok_or("HeaderFrom works on a struct or map value only")?;
    let fields = super::schema_fields(schema);
    if let Some(fs) = &fields {
        // A struct must have the fields (a map without one gives a null header).
        for (f, _) in &c.pairs {
            if !fs
                .iter()
                .any(|x| x.get("field").and_then(Value::as_str) == Some(f))
            {
                return Err(format!("HeaderFrom: the schema has no field {f:?}"));
            }
        }
    }
    for (f, h) in &c.pairs {
        let v = if c.moving {
            obj.remove(f)
        } else {
            obj.get(f).cloned()
        };
        let bytes = match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.into_bytes()),
            Some(v) => Some(v.to_string().into_bytes()),
        };
        headers.push((h.clone(), bytes));
    }
    if c.moving
        && let Some(fs) = fields
    {
        fs.retain(|x| {
            let name = x.get("field").and_then(Value::as_str);
            !c.pairs.iter().any(|(f, _)| Some(f.as_str()) == name)
        });
    }
    Ok(())
}
