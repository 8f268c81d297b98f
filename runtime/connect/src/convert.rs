//! Converters (Kafka Connect's `key.converter`/`value.converter`) and the runtime's view of a
//! record's key or value between them and the transforms.
//!
//! A value is [`Data::Raw`] bytes until something needs its structure (a structured transform,
//! or JsonConverter writing it), then [`Data::Json`]: a JSON value, with the Connect schema
//! when the record carries one. Schemaless JSON that is known to be JSON (a plugin declaring
//! JSON values, JsonConverter without schemas on a sink) is [`Data::JsonText`]: validated once
//! and kept as text, which the field transforms edit in place of a parsed tree. With no
//! transform that needs structure and a bytes-preserving converter, bytes pass through
//! untouched.

use serde_json::{Value, json};

use crate::ConnectError;
use crate::jsontext;

/// A key or value inside the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Bytes as the plugin or the log gave them (`None`: null).
    Raw(Option<Vec<u8>>),
    /// Structured: a JSON value and, when known, its Connect schema.
    Json { schema: Option<Value>, value: Value },
    /// A schemaless JSON document as its (valid) text; never JSON's `null`, which is
    /// [`Data::Json`] (see [`Data::json_text`]).
    JsonText(Vec<u8>),
}

impl Default for Data {
    /// Null.
    fn default() -> Data {
        Data::Raw(None)
    }
}

impl Data {
    /// A JSON document already validated ([`jsontext::validate`]).
    pub fn json_text(b: Vec<u8>) -> Data {
        if jsontext::is_null(&b) {
            Data::Json {
                schema: None,
                value: Value::Null,
            }
        } else {
            Data::JsonText(b)
        }
    }

    /// Bytes that must be one JSON document; `what` says whose, for the error.
    pub fn parse_json(b: &[u8], what: &str) -> Result<Data, String> {
        jsontext::validate(b).map_err(|e| format!("{what}: {e}"))?;
        Ok(Data::json_text(b.to_vec()))
    }

    pub fn is_null(&self) -> bool {
        matches!(
            self,
            Data::Raw(None)
                | Data::Json {
                    value: Value::Null,
                    ..
                }
        )
    }

    /// The structured form: raw bytes that are a JSON document are parsed (schemaless);
    /// `what` names the transform asking, for the error.
    pub fn structured(&mut self, what: &str) -> Result<(&mut Option<Value>, &mut Value), String> {
        match self {
            Data::Raw(b) => {
                let value = match b {
                    None => Value::Null,
                    Some(b) => serde_json::from_slice(b).map_err(|e| {
                        format!(
                            "{what} needs a structured value, and this one is not JSON ({e}); \
                             set a JsonConverter, or have the source write JSON"
                        )
                    })?,
                };
                *self = Data::Json {
                    schema: None,
                    value,
                };
            }
            Data::JsonText(b) => {
                let value = serde_json::from_slice(b)
                    .map_err(|e| format!("{what}: the value is not JSON ({e})"))?;
                *self = Data::Json {
                    schema: None,
                    value,
                };
            }
            Data::Json { .. } => {}
        }
        match self {
            Data::Json { schema, value } => Ok((schema, value)),
            _ => unreachable!("converted above"),
        }
    }

    /// The bytes a plugin receives, or that a bytes converter writes: raw bytes as they are,
    /// a string as its text, anything else as its JSON.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Data::Raw(b) => b,
            Data::Json { value, .. } => json_bytes(value),
            Data::JsonText(b) => Some(jsontext::as_string(&b).map_or(b, String::into_bytes)),
        }
    }

    /// [`Data::into_bytes`] without giving the data up (raw bytes and strings borrowed).
    pub fn to_bytes(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        match self {
            Data::Raw(b) => b.as_deref().map(Cow::Borrowed),
            Data::Json {
                value: Value::Null, ..
            } => None,
            Data::Json {
                value: Value::String(s),
                ..
            } => Some(Cow::Borrowed(s.as_bytes())),
            Data::Json { value, .. } => serde_json::to_vec(value).ok().map(Cow::Owned),
            Data::JsonText(b) => Some(
                jsontext::as_string(b)
                    .map_or(Cow::Borrowed(b.as_slice()), |s| Cow::Owned(s.into_bytes())),
            ),
        }
    }

    /// The data as a JSON document's text (a string quoted); raw bytes as they are.
    pub fn json_bytes(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        match self {
            Data::Raw(b) => b.as_deref().map(Cow::Borrowed),
            Data::JsonText(b) => Some(Cow::Borrowed(b)),
            Data::Json {
                value: Value::Null, ..
            } => None,
            Data::Json { value, .. } => serde_json::to_vec(value).ok().map(Cow::Owned),
        }
    }

    /// The `{schema, payload}` envelope's bytes (a plugin that declared connect-json).
    pub fn into_envelope(self) -> Option<Vec<u8>> {
        match self {
            Data::Raw(None)
            | Data::Json {
                value: Value::Null,
                schema: None,
            } => None,
            Data::JsonText(b) => Some(schemaless_envelope(&b)),
            d => {
                let (schema, payload) = to_schema_and_payload(d);
                serde_json::to_vec(&json!({ "schema": schema, "payload": payload })).ok()
            }
        }
    }
}

fn json_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.into_bytes()),
        v => serde_json::to_vec(&v).ok(),
    }
}

/// `{"schema":null,"payload":<doc>}` around a JSON document's text.
fn schemaless_envelope(doc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len() + 30);
    out.extend_from_slice(br#"{"schema":null,"payload":"#);
    out.extend_from_slice(doc);
    out.push(b'}');
    out
}

/// Raw bytes as Connect sees them: text is a string, other bytes are `bytes` (base64 in JSON).
fn to_schema_and_payload(d: Data) -> (Value, Value) {
    match d {
        Data::Raw(None) => (Value::Null, Value::Null),
        Data::Raw(Some(b)) => match String::from_utf8(b) {
            Ok(s) => (
                json!({"type": "string", "optional": false}),
                Value::String(s),
            ),
            Err(e) => (
                json!({"type": "bytes", "optional": false}),
                Value::String(base64(e.as_bytes())),
            ),
        },
        Data::Json { schema, value } => (schema.unwrap_or(Value::Null), value),
        Data::JsonText(b) => (
            Value::Null,
            serde_json::from_slice(&b).unwrap_or(Value::Null),
        ),
    }
}

/// How a plugin's bytes are to be read, declared by the plugin (`weir.value.format`,
/// `weir.key.format`: a config key it lists with that default) or its connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Opaque bytes (text for the file connectors).
    Bytes,
    /// A JSON document, without schema.
    Json,
    /// Kafka's `{"schema": ..., "payload": ...}` envelope.
    ConnectJson,
}

impl Format {
    pub fn parse(key: &str, v: &str) -> Result<Format, ConnectError> {
        match v.trim() {
            "bytes" | "" => Ok(Format::Bytes),
            "json" => Ok(Format::Json),
            "connect-json" => Ok(Format::ConnectJson),
            other => Err(ConnectError::BadConfig(format!(
                "{key}: {other:?} is not a value format (bytes, json or connect-json)"
            ))),
        }
    }

    /// A plugin's bytes as data.
    pub fn read(self, b: Option<&[u8]>) -> Result<Data, String> {
        match (self, b) {
            (Format::Bytes, b) => Ok(Data::Raw(b.map(<[u8]>::to_vec))),
            (_, None) => Ok(Data::Raw(None)),
            (Format::Json, Some(b)) => Data::parse_json(b, "the plugin's JSON does not parse"),
            (Format::ConnectJson, Some(b)) => envelope(b),
        }
    }

    /// Data as the plugin wants its bytes.
    pub fn write(self, d: Data) -> Option<Vec<u8>> {
        match self {
            Format::ConnectJson => d.into_envelope(),
            _ => d.into_bytes(),
        }
    }
}

/// Reads a `{schema, payload}` envelope.
fn envelope(b: &[u8]) -> Result<Data, String> {
    let v: Value = serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}"))?;
    match v {
        Value::Object(mut m) if m.contains_key("schema") && m.contains_key("payload") && m.len() == 2 => {
            let schema = m.remove("schema").filter(|s| !s.is_null());
            let value = m.remove("payload").unwrap_or(Value::Null);
            Ok(Data::Json { schema, value })
        }
        _ => Err(
            "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not contain additional fields; \
             if you are trying to deserialize plain JSON data, set schemas.enable=false in your converter configuration"
                .into(),
        ),
    }
}

/// A converter, by Kafka Connect class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    /// ByteArrayConverter (and no converter set): bytes as they are.
    ByteArray,
    /// StringConverter: text.
    String,
    /// JsonConverter; `schemas` is `schemas.enable` (Kafka's default: true).
    Json { schemas: bool },
}

impl Converter {
    /// `key.converter` / `value.converter` with its `<prefix>.schemas.enable`.
    pub fn from_config(
        prefix: &str,
        raw: &std::collections::BTreeMap<String, String>,
    ) -> Result<Converter, ConnectError> {
        let Some(class) = raw.get(prefix) else {
            return Ok(Converter::ByteArray);
        };
        let short = class.trim().rsplit('.').next().unwrap_or("");
        match short {
            "ByteArrayConverter" => Ok(Converter::ByteArray),
            "StringConverter" => Ok(Converter::String),
            "JsonConverter" => {
                let key = format!("{prefix}.schemas.enable");
                let schemas = match raw.get(&key).map(|s| s.trim().to_ascii_lowercase()) {
                    None => true,
                    Some(s) if s == "true" => true,
                    Some(s) if s == "false" => false,
                    Some(s) => {
                        return Err(ConnectError::BadConfig(format!(
                            "{key}: invalid value {s:?}: expected true or false"
                        )));
                    }
                };
                Ok(Converter::Json { schemas })
            }
            _ => Err(ConnectError::BadConfig(format!(
                "{prefix}: unknown converter {class:?} (supported: org.apache.kafka.connect.converters.ByteArrayConverter, \
                 org.apache.kafka.connect.storage.StringConverter, org.apache.kafka.connect.json.JsonConverter)"
            ))),
        }
    }

    /// Kafka's class name of the converter.
    pub fn class(self) -> &'static str {
        match self {
            Converter::ByteArray => "org.apache.kafka.connect.converters.ByteArrayConverter",
            Converter::String => "org.apache.kafka.connect.storage.StringConverter",
            Converter::Json { .. } => "org.apache.kafka.connect.json.JsonConverter",
        }
    }

    /// Leaves raw bytes as they are in both directions.
    pub fn is_bytes(self) -> bool {
        matches!(self, Converter::ByteArray | Converter::String)
    }

    /// Log bytes as data (sinks).
    pub fn deserialize(self, b: Option<&[u8]>) -> Result<Data, String> {
        match (self, b) {
            (Converter::ByteArray | Converter::String, b) => Ok(Data::Raw(b.map(<[u8]>::to_vec))),
            (Converter::Json { .. }, None) => Ok(Data::Raw(None)),
            (Converter::Json { schemas: true }, Some(b)) => envelope(b),
            (Converter::Json { schemas: false }, Some(b)) => {
                Data::parse_json(b, "converting bytes to JSON failed")
            }
        }
    }

    /// Data as log bytes (sources).
    pub fn serialize(self, d: Data) -> Option<Vec<u8>> {
        match self {
            Converter::ByteArray | Converter::String => d.into_bytes(),
            Converter::Json { schemas } => {
                if let Data::JsonText(b) = d {
                    return Some(if schemas { schemaless_envelope(&b) } else { b });
                }
                if d.is_null()
                    && !matches!(
                        &d,
                        Data::Json {
                            schema: Some(_),
                            ..
                        }
                    )
                {
                    return None;
                }
                let (schema, payload) = to_schema_and_payload(d);
                let v = if schemas {
                    json!({ "schema": schema, "payload": payload })
                } else {
                    payload
                };
                serde_json::to_vec(&v).ok()
            }
        }
    }
}

/// Standard base64 with padding.
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_converter_writes_kafkas_shapes() {
        let with = Converter::Json { schemas: true };
        let without = Converter::Json { schemas: false };
        let text = || Data::Raw(Some(b"hello".to_vec()));
        assert_eq!(
            String::from_utf8(with.serialize(text()).unwrap()).unwrap(),
            r#"{"payload":"hello","schema":{"optional":false,"type":"string"}}"#
        );
        assert_eq!(without.serialize(text()).unwrap(), br#""hello""#);
        assert_eq!(with.serialize(Data::Raw(None)), None);
        let bin = Data::Raw(Some(vec![0xff, 0, 1]));
        assert_eq!(without.serialize(bin).unwrap(), br#""/wAB""#);
        let back = with
            .deserialize(Some(
                br#"{"schema":{"type":"string","optional":false},"payload":"hi"}"#,
            ))
            .unwrap();
        assert_eq!(back.into_bytes().unwrap(), b"hi");
        assert!(
            with.deserialize(Some(br#"{"a":1}"#))
                .unwrap_err()
                .contains("schemas.enable=false")
        );
        // Schemaless JSON stays text until a transform needs its structure.
        let mut doc = without.deserialize(Some(br#"{"a": 1}"#)).unwrap();
        assert_eq!(doc, Data::JsonText(br#"{"a": 1}"#.to_vec()));
        assert_eq!(without.serialize(doc.clone()).unwrap(), br#"{"a": 1}"#);
        assert_eq!(
            with.serialize(doc.clone()).unwrap(),
            br#"{"schema":null,"payload":{"a": 1}}"#
        );
        assert_eq!(doc.structured("t").unwrap().1, &json!({"a": 1}));
        assert_eq!(
            without.deserialize(Some(b" null")).unwrap(),
            Data::Json {
                schema: None,
                value: Value::Null
            }
        );
        let s = without.deserialize(Some(br#""a\"b""#)).unwrap();
        assert_eq!(s.into_bytes().unwrap(), br#"a"b"#);
        assert!(without.deserialize(Some(b"not json")).is_err());
        assert!(without.deserialize(Some(br#"{"a":1} x"#)).is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
