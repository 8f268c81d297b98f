//! Kafka's `Cast$Key`/`Cast$Value`: fields, or the whole key or value, to a primitive type,
//! with Java's conversions (narrowing wraps, floats truncate toward zero, a string parses,
//! a boolean is 1 or 0 and any non-zero number is true) and the schema following.

use serde_json::{Number, Value, json};

use super::timefmt::Pattern;
use crate::ConnectError;
use crate::convert::Data;

/// A type Cast casts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "float32" => Type::Float32,
            "float64" => Type::Float64,
            "boolean" => Type::Boolean,
            "string" => Type::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Int8 => "int8",
            Type::Int16 => "int16",
            Type::Int32 => "int32",
            Type::Int64 => "int64",
            Type::Float32 => "float32",
            Type::Float64 => "float64",
            Type::Boolean => "boolean",
            Type::String => "string",
        }
    }
}

/// `spec`: one type for the whole key or value, or `field:type` pairs.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Whole(Type),
    Fields(Vec<(String, Type)>),
}

/// Reads `spec` (Kafka's rules: at least one cast; a bare type only on its own).
pub fn parse(spec: Option<&String>, key: &dyn Fn(&str) -> String) -> Result<Spec, ConnectError> {
    let bad = |m: String| ConnectError::BadConfig(format!("{}: {m}", key("spec")));
    let entries: Vec<&str> = spec
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        return Err(bad(
            "missing required configuration: at least one cast, as \
                        field:type pairs or a single type"
                .into(),
        ));
    }
    let ty = |t: &str| {
        Type::parse(t).ok_or_else(|| {
            bad(format!(
                "invalid type {:?} (valid: int8, int16, int32, int64, float32, float64, \
                 boolean, string)",
                t.trim()
            ))
        })
    };
    let mut fields: Vec<(String, Type)> = Vec::new();
    for e in &entries {
        match e.split(':').collect::<Vec<_>>()[..] {
            [t] if entries.len() == 1 => return Ok(Spec::Whole(ty(t)?)),
            [_] => {
                return Err(bad(format!(
                    "{e:?} casts the whole value, so it must be the spec's only entry"
                )));
            }
            [f, t] if !f.trim().is_empty() => {
                let (f, t) = (f.trim().to_string(), ty(t)?);
                fields.retain(|(x, _)| *x != f);
                fields.push((f, t));
            }
            _ => return Err(bad(format!("invalid cast {e:?}: expected field:type"))),
        }
    }
    Ok(Spec::Fields(fields))
}

/// Casts `data` (not null).
pub fn apply(spec: &Spec, data: &mut Data) -> Result<(), String> {
    let (schema, value) = data.structured("Cast")?;
    match spec {
        Spec::Whole(t) => {
            if let Some(s) = schema.as_mut() {
                let logical = check(s, *t).map_err(|e| format!("Cast: {e}"))?;
                *value = cast(value, *t, logical.as_deref()).map_err(|e| format!("Cast: {e}"))?;
                *s = cast_schema(s, *t, None)?;
            } else {
                *value = cast(value, *t, None).map_err(|e| format!("Cast: {e}"))?;
            }
        }
        Spec::Fields(casts) => {
            let obj = value
                .as_object_mut()
                .ok_or("Cast with field:type pairs works on a struct or map value only")?;
            match super::schema_fields(schema) {
                Some(fields) => {
                    for fs in fields.iter_mut() {
                        let Some(name) = fs.get("field").and_then(Value::as_str) else {
                            continue;
                        };
                        let Some((name, t)) = casts.iter().find(|(f, _)| f == name) else {
                            continue;
                        };
                        let err = |e: String| format!("Cast: field {name:?}: {e}");
                        let logical = check(fs, *t).map_err(err)?;
                        if let Some(v) = obj.get_mut(name) {
                            *v = cast(v, *t, logical.as_deref()).map_err(err)?;
                        }
                        *fs = cast_schema(fs, *t, Some(name))?;
                    }
                }
                None => {
                    // Fields the map lacks stay absent.
                    for (name, t) in casts {
                        if let Some(v) = obj.get_mut(name) {
                            *v = cast(v, *t, None)
                                .map_err(|e| format!("Cast: field {name:?}: {e}"))?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether a field of schema `s` can become `t`; its logical type (Timestamp, Date, Time).
fn check(s: &Value, t: Type) -> Result<Option<String>, String> {
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
    let name = s.get("name").and_then(Value::as_str);
    let logical = match name {
        Some(
            n @ ("org.apache.kafka.connect.data.Timestamp"
            | "org.apache.kafka.connect.data.Date"
            | "org.apache.kafka.connect.data.Time"),
        ) => Some(n.to_string()),
        Some("org.apache.kafka.connect.data.Decimal") => {
            return Err("casting a Decimal is not supported".into());
        }
        _ => None,
    };
    match ty {
        "int8" | "int16" | "int32" | "int64" | "float32" | "float64" | "boolean" | "string" => {
            Ok(logical)
        }
        "bytes" | "struct" | "array" | "map" if t == Type::String => Ok(None),
        other => Err(format!(
            "cannot cast a {other} to {} (only to string)",
            t.name()
        )),
    }
}

/// The schema after the cast: the type, optional and default kept (Kafka drops the rest).
fn cast_schema(s: &Value, t: Type, field: Option<&str>) -> Result<Value, String> {
    let optional = s.get("optional").and_then(Value::as_bool).unwrap_or(false);
    let mut out = json!({"type": t.name(), "optional": optional});
    if let Some(d) = s.get("default").filter(|d| !d.is_null()) {
        out["default"] = cast(d, t, None).map_err(|e| format!("Cast: the default: {e}"))?;
    }
    if let Some(f) = field {
        out["field"] = Value::String(f.to_string());
    }
    Ok(out)
}

/// A value cast to `t`; `logical` is the source's Connect logical type, if any.
fn cast(v: &Value, t: Type, logical: Option<&str>) -> Result<Value, String> {
    let fail = || format!("cannot cast {v} to {}", t.name());
    let n = match v {
        Value::Null => return Ok(Value::Null),
        Value::Number(n) => Num::of(n),
        Value::Bool(b) => Num::I(i64::from(*b)),
        Value::String(s) => {
            return match t {
                Type::String => Ok(v.clone()),
                // Java's Boolean.parseBoolean: "true" in any case, else false.
                Type::Boolean => Ok(Value::Bool(s.trim().eq_ignore_ascii_case("true"))),
                Type::Float32 | Type::Float64 => {
                    let s = s.trim();
                    let s = s.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(s);
                    let f: f64 = s.parse().map_err(|_| fail())?;
                    float(f, t).ok_or_else(fail)
                }
                _ => {
                    let i: i64 = s.parse().map_err(|_| fail())?;
                    let narrowed = int(Num::I(i), t);
                    if narrowed != i {
                        return Err(format!("{} (out of range)", fail()));
                    }
                    Ok(narrowed)
                }
            };
        }
        Value::Array(_) | Value::Object(_) => {
            return match t {
                Type::String => Ok(Value::String(v.to_string())),
                _ => Err(fail()),
            };
        }
    };
    Ok(match t {
        Type::Int8 | Type::Int16 | Type::Int32 | Type::Int64 => int(n, t),
        Type::Float32 | Type::Float64 => float(n.f64(), t).ok_or_else(fail)?,
        Type::Boolean => Value::Bool(n.i64() != 0),
        Type::String => Value::String(match (logical, n) {
            _ if v.is_boolean() => v.to_string(),
            (Some(l), Num::I(i)) => logical_text(l, i),
            (_, Num::I(i)) => i.to_string(),
            (_, Num::F(f)) => java_double(f),
        }),
    })
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Num::I(i),
            (None, Some(u)) => Num::I(u as i64),
            _ => Num::F(n.as_f64().unwrap_or(0.0)),
        }
    }

    /// Java's `longValue()`: floats truncate toward zero, saturating.
    fn i64(self) -> i64 {
        match self {
            Num::I(i) => i,
            Num::F(f) => f as i64,
        }
    }

    fn f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

/// Java's `byteValue()`/`shortValue()`/`intValue()`/`longValue()`.
fn int(n: Num, t: Type) -> Value {
    let i32_of = |n: Num| match n {
        Num::I(i) => i as i32,
        Num::F(f) => f as i32,
    };
    match t {
        Type::Int8 => Value::from(i32_of(n) as i8),
        Type::Int16 => Value::from(i32_of(n) as i16),
        Type::Int32 => Value::from(i32_of(n)),
        _ => Value::from(n.i64()),
    }
}

/// A float32 keeps a float's precision (1.1 stays 1.1, not 1.100000023841858).
fn float(f: f64, t: Type) -> Option<Value> {
    let f = if t == Type::Float32 {
        (f as f32).to_string().parse().ok()?
    } else {
        f
    };
    Number::from_f64(f).map(Value::Number)
}

/// Java's `Double.toString`.
fn java_double(f: f64) -> String {
    let a = f.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = f.to_string();
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        if m.contains('.') {
            format!("{m}E{e}")
        } else {
            format!("{m}.0E{e}")
        }
    }
}

/// A Connect Timestamp, Date or Time as text, in ISO 8601 as Kafka writes them.
fn logical_text(logical: &str, i: i64) -> String {
    let (pattern, ms) = match logical.rsplit('.').next() {
        Some("Date") => ("yyyy-MM-dd", i.saturating_mul(86_400_000)),
        Some("Time") => ("HH:mm:ss.SSS'Z'", i),
        _ => ("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", i),
    };
    Pattern::lenient(pattern).format(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_like_java() {
        let c = |v: Value, t: Type| cast(&v, t, None);
        assert_eq!(c(json!(300), Type::Int8), Ok(json!(44)));
        assert_eq!(c(json!(-129), Type::Int8), Ok(json!(127)));
        assert_eq!(c(json!(70_000), Type::Int16), Ok(json!(4464)));
        assert_eq!(c(json!(1e12), Type::Int32), Ok(json!(i32::MAX)));
        assert_eq!(c(json!(-2.9), Type::Int64), Ok(json!(-2)));
        assert_eq!(c(json!(true), Type::Int32), Ok(json!(1)));
        assert_eq!(c(json!("-42"), Type::Int16), Ok(json!(-42)));
        assert_eq!(c(json!(1234), Type::Float64), Ok(json!(1234.0)));
        assert_eq!(c(json!(1.1), Type::Float32), Ok(json!(1.1)));
        assert_eq!(c(json!(" 2.5f"), Type::Float32), Ok(json!(2.5)));
        assert_eq!(c(json!(0.5), Type::Boolean), Ok(json!(false)));
        assert_eq!(c(json!(-3), Type::Boolean), Ok(json!(true)));
        assert_eq!(c(json!("TRUE"), Type::Boolean), Ok(json!(true)));
        assert_eq!(c(json!("yes"), Type::Boolean), Ok(json!(false)));
        assert_eq!(c(json!(12), Type::String), Ok(json!("12")));
        assert_eq!(c(json!(1.0), Type::String), Ok(json!("1.0")));
        assert_eq!(c(json!(1.5e10), Type::String), Ok(json!("1.5E10")));
        assert_eq!(c(json!(0.0001), Type::String), Ok(json!("1.0E-4")));
        assert_eq!(c(json!(false), Type::String), Ok(json!("false")));
        assert_eq!(c(json!({"a": [1]}), Type::String), Ok(json!("{\"a\":[1]}")));
        assert_eq!(c(Value::Null, Type::Int8), Ok(Value::Null));
        assert!(
            c(json!("abc"), Type::Int32)
                .unwrap_err()
                .contains("\"abc\"")
        );
        assert!(c(json!("1.5"), Type::Int64).is_err());
        assert!(
            c(json!("300"), Type::Int8)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(c(json!([1]), Type::Int32).is_err());
        assert_eq!(
            cast(
                &json!(1_700_000_000_000i64),
                Type::String,
                Some("org.apache.kafka.connect.data.Timestamp")
            ),
            Ok(json!("2023-11-14T22:13:20.000Z"))
        );
        assert_eq!(
            cast(
                &json!(19_675),
                Type::String,
                Some("org.apache.kafka.connect.data.Date")
            ),
            Ok(json!("2023-11-14"))
        );
    }
}
