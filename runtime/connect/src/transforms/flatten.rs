//! Kafka's `Flatten$Key`/`$Value`: nested structs (maps, schemaless) become top-level fields
//! named by their path joined with `delimiter`; arrays, and maps in a schema, stay as they are.

use serde_json::{Map, Value};

use crate::convert::Data;

/// Flattens `data` (not null).
pub fn apply(delimiter: &str, data: &mut Data) -> Result<(), String> {
    let (schema, value) = data.structured("Flatten")?;
    let obj = value
        .as_object_mut()
        .ok_or("Flatten works on a struct or map value only")?;
    let old = std::mem::take(obj);
    match super::schema_fields(schema) {
        Some(fields) => {
            let mut flat_fields = Vec::new();
            flatten_schema("", fields, false, delimiter, &mut flat_fields)?;
            flatten_struct("", fields, Some(&old), delimiter, obj);
            *fields = flat_fields;
        }
        None => flatten_map("", old, delimiter, obj),
    }
    Ok(())
}

fn path(prefix: &str, name: &str, delimiter: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}{delimiter}{name}")
    }
}

fn flatten_map(prefix: &str, m: Map<String, Value>, delimiter: &str, out: &mut Map<String, Value>) {
    for (k, v) in m {
        let name = path(prefix, &k, delimiter);
        match v {
            Value::Object(inner) => flatten_map(&name, inner, delimiter, out),
            v => {
                out.insert(name, v);
            }
        }
    }
}

fn field_name(f: &Value) -> &str {
    f.get("field").and_then(Value::as_str).unwrap_or("")
}

fn is_struct(f: &Value) -> bool {
    f.get("type").and_then(Value::as_str) == Some("struct")
}

/// The flat fields: a nested struct's fields are optional if it or any struct above is.
fn flatten_schema(
    prefix: &str,
    fields: &[Value],
    parent_optional: bool,
    delimiter: &str,
    out: &mut Vec<Value>,
) -> Result<(), String> {
    for f in fields {
        let name = path(prefix, field_name(f), delimiter);
        let optional =
            parent_optional || f.get("optional").and_then(Value::as_bool).unwrap_or(false);
        if is_struct(f) {
            let inner = f
                .get("fields")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            flatten_schema(&name, inner, optional, delimiter, out)?;
            continue;
        }
        if out.iter().any(|x| field_name(x) == name) {
            return Err(format!("Flatten: two fields flatten to the name {name:?}"));
        }
        let mut flat = f.clone();
        flat["field"] = Value::String(name);
        flat["optional"] = Value::Bool(optional);
        out.push(flat);
    }
    Ok(())
}

/// The flat value, following the schema: a field of a null struct is null.
fn flatten_struct(
    prefix: &str,
    fields: &[Value],
    value: Option<&Map<String, Value>>,
    delimiter: &str,
    out: &mut Map<String, Value>,
) {
    for f in fields {
        let name = path(prefix, field_name(f), delimiter);
        let v = value.and_then(|m| m.get(field_name(f)));
        if is_struct(f) {
            let inner = f
                .get("fields")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            flatten_struct(&name, inner, v.and_then(Value::as_object), delimiter, out);
        } else {
            out.insert(name, v.cloned().unwrap_or(Value::Null));
        }
    }
}
