//! Kafka's `TimestampConverter$Key`/`$Value`: a field (or the whole key or value) between a
//! string in a `SimpleDateFormat` pattern, a Unix time, and Connect's Date, Time and
//! Timestamp (in JSON: int32 days, int32 ms of the day, int64 ms), all in UTC.

use serde_json::{Value, json};

use super::timefmt::Pattern;
use crate::ConnectError;
use crate::convert::Data;

const DAY_MS: i64 = 86_400_000;
const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const TIME: &str = "org.apache.kafka.connect.data.Time";

/// A timestamp representation (`target.type`, and what an input is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

/// `unix.precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

/// The transform's config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Empty: the whole key or value.
    field: String,
    target: Kind,
    format: Option<Pattern>,
    precision: Precision,
}

/// Reads `field`, `target.type`, `format` and `unix.precision`.
pub fn parse<'a>(
    get: &dyn Fn(&str) -> Option<&'a String>,
    key: &dyn Fn(&str) -> String,
) -> Result<Config, ConnectError> {
    let bad = |k: &str, m: String| ConnectError::BadConfig(format!("{}: {m}", key(k)));
    let target = match get("target.type").map(|s| s.trim()) {
        None | Some("") => {
            return Err(bad("target.type", "missing required configuration".into()));
        }
        Some("string") => Kind::String,
        Some("unix") => Kind::Unix,
        Some("Date") => Kind::Date,
        Some("Time") => Kind::Time,
        Some("Timestamp") => Kind::Timestamp,
        Some(other) => {
            return Err(bad(
                "target.type",
                format!(
                    "unknown timestamp type {other:?} (valid: string, unix, Date, Time, Timestamp)"
                ),
            ));
        }
    };
    let format = match get("format").map(|s| s.as_str()).filter(|s| !s.is_empty()) {
        Some(p) => Some(Pattern::compile(p).map_err(|e| {
            bad(
                "format",
                format!("not a usable SimpleDateFormat pattern: {e}"),
            )
        })?),
        None if target == Kind::String => {
            return Err(bad(
                "format",
                "missing required configuration: target.type string needs a SimpleDateFormat \
                 pattern"
                    .into(),
            ));
        }
        None => None,
    };
    let precision = match get("unix.precision").map(|s| s.trim()) {
        None | Some("" | "milliseconds") => Precision::Milliseconds,
        Some("seconds") => Precision::Seconds,
        Some("microseconds") => Precision::Microseconds,
        Some("nanoseconds") => Precision::Nanoseconds,
        Some(other) => {
            return Err(bad(
                "unix.precision",
                format!(
                    "invalid value {other:?} (valid: seconds, milliseconds, microseconds, \
                     nanoseconds)"
                ),
            ));
        }
    };
    Ok(Config {
        field: get("field")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        target,
        format,
        precision,
    })
}

/// Converts `data` (not null).
pub fn apply(c: &Config, data: &mut Data) -> Result<(), String> {
    let (schema, value) = data.structured("TimestampConverter")?;
    let err = |e: String| format!("TimestampConverter: {e}");
    if c.field.is_empty() {
        let from = kind(schema.as_ref(), value).map_err(err)?;
        *value = convert(c, from, value).map_err(err)?;
        if let Some(s) = schema.as_mut() {
            *s = target_schema(c.target, optional(s), None);
        }
        return Ok(());
    }
    let f = &c.field;
    let obj = value
        .as_object_mut()
        .ok_or("TimestampConverter with `field` works on a struct or map value only")?;
    match super::schema_fields(schema) {
        Some(fields) => {
            let fs = fields
                .iter_mut()
                .find(|x| x.get("field").and_then(Value::as_str) == Some(f))
                .ok_or_else(|| err(format!("the schema has no field {f:?}")))?;
            let v = obj.entry(f.clone()).or_insert(Value::Null);
            let from = kind(Some(fs), v).map_err(|e| err(format!("field {f:?}: {e}")))?;
            *v = convert(c, from, v).map_err(|e| err(format!("field {f:?}: {e}")))?;
            *fs = target_schema(c.target, optional(fs), Some(f));
        }
        None => {
            // A map without the field passes unchanged.
            if let Some(v) = obj.get_mut(f) {
                let from = kind(None, v).map_err(|e| err(format!("field {f:?}: {e}")))?;
                *v = convert(c, from, v).map_err(|e| err(format!("field {f:?}: {e}")))?;
            }
        }
    }
    Ok(())
}

fn optional(s: &Value) -> bool {
    s.get("optional").and_then(Value::as_bool).unwrap_or(false)
}

/// What an input is: from its schema (logical name, or string/int64), else from the value.
fn kind(schema: Option<&Value>, v: &Value) -> Result<Kind, String> {
    if let Some(s) = schema {
        let name = s.get("name").and_then(Value::as_str);
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
        return match (name, ty) {
            (Some(TIMESTAMP), _) => Ok(Kind::Timestamp),
            (Some(DATE), _) => Ok(Kind::Date),
            (Some(TIME), _) => Ok(Kind::Time),
            (_, "string") => Ok(Kind::String),
            (_, "int64") => Ok(Kind::Unix),
            _ => Err(format!(
                "schema {} is not a timestamp type (string, int64, Date, Time or Timestamp)",
                name.unwrap_or(ty)
            )),
        };
    }
    match v {
        Value::String(_) => Ok(Kind::String),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Kind::Unix),
        Value::Null => Ok(Kind::Unix), // stays null
        other => Err(format!(
            "{other} is not a timestamp (a string or an integer Unix time)"
        )),
    }
}

/// One value from `from` to the target representation; null stays null.
fn convert(c: &Config, from: Kind, v: &Value) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let int = || v.as_i64().ok_or_else(|| format!("{v} is not an integer"));
    let ms = match from {
        Kind::String => {
            let s = v.as_str().ok_or_else(|| format!("{v} is not a string"))?;
            let p = c.format.as_ref().ok_or_else(|| {
                format!("{s:?} is a string timestamp, and no `format` is set to parse it")
            })?;
            p.parse(s)
                .map_err(|e| format!("could not parse {s:?} with the format: {e}"))?
        }
        Kind::Unix => {
            let i = int()?;
            match c.precision {
                Precision::Seconds => i
                    .checked_mul(1000)
                    .ok_or_else(|| format!("{i} seconds is out of range"))?,
                Precision::Milliseconds => i,
                Precision::Microseconds => i / 1000,
                Precision::Nanoseconds => i / 1_000_000,
            }
        }
        Kind::Date => int()?
            .checked_mul(DAY_MS)
            .ok_or_else(|| format!("{v} days is out of range"))?,
        Kind::Time | Kind::Timestamp => int()?,
    };
    Ok(match c.target {
        Kind::String => match &c.format {
            Some(p) => Value::String(p.format(ms)),
            None => unreachable!("target.type string requires a format"),
        },
        Kind::Unix => Value::from(match c.precision {
            Precision::Seconds => ms / 1000,
            Precision::Milliseconds => ms,
            Precision::Microseconds => ms.saturating_mul(1000),
            Precision::Nanoseconds => ms.saturating_mul(1_000_000),
        }),
        Kind::Date => Value::from(ms.div_euclid(DAY_MS)),
        Kind::Time => Value::from(ms.rem_euclid(DAY_MS)),
        Kind::Timestamp => Value::from(ms),
    })
}

/// The Connect schema of the target representation.
fn target_schema(k: Kind, optional: bool, field: Option<&str>) -> Value {
    let mut s = match k {
        Kind::String => json!({"type": "string"}),
        Kind::Unix => json!({"type": "int64"}),
        Kind::Date => json!({"type": "int32", "name": DATE, "version": 1}),
        Kind::Time => json!({"type": "int32", "name": TIME, "version": 1}),
        Kind::Timestamp => json!({"type": "int64", "name": TIMESTAMP, "version": 1}),
    };
    s["optional"] = Value::Bool(optional);
    if let Some(f) = field {
        s["field"] = Value::String(f.to_string());
    }
    s
}
