//! Debezium's `io.debezium.transforms.ExtractNewRecordState` ("unwrap"): a change event's
//! envelope `{before, after, source, op, ts_ms}` becomes the row after the change (the `after`
//! struct, with its schema), as a plain row for sinks and analysts.
//!
//! - Creates, updates and snapshot reads become `after`. Truncates are dropped. Records that
//!   are not change events (heartbeats, anything without `op` and `after`/`before`) pass
//!   through unchanged.
//! - Deletes and tombstones, as Debezium: `delete.tombstone.handling.mode` (`drop`,
//!   `tombstone`, `rewrite`, `rewrite-with-tombstone`, `delete-to-tombstone`) or the older
//!   `delete.handling.mode` (`drop`, the default; `none`; `rewrite`) with `drop.tombstones`
//!   (default true). `rewrite` writes a delete as its `before` row, and every record with an
//!   optional string field `__deleted` ("true" for deletes, "false" otherwise).
//! - `add.fields` (`op`, `ts_ms` from the envelope, any other name from `source`, or
//!   `struct.field` such as `source.ts_ms`) adds optional fields named `<add.fields.prefix>`
//!   (default `__`) + the name, `.` written `_` (`__source_ts_ms`); `add.headers` adds them as
//!   headers (`add.headers.prefix`), a string as its text and anything else as its JSON.
//! - `route.by.field`: the record goes to the topic named by that field of the row.

use serde_json::{Map, Value, json};

use super::Rec;
use crate::ConnectError;

/// What happens to a delete event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletes {
    Drop,
    /// Kept, its value null (`none`, `tombstone`).
    Null,
    /// Kept as its `before` row with `__deleted: "true"`.
    Rewrite,
}

/// A metadata field to add: where it is read, and the name it gets.
#[derive(Debug, Clone)]
struct Meta {
    /// The envelope's own field (`op`, `ts_ms`...), or one of `source`'s.
    in_source: bool,
    field: String,
    name: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    deletes: Deletes,
    keep_tombstones: bool,
    fields: Vec<Meta>,
    headers: Vec<Meta>,
    route_by: Option<String>,
}

/// The envelope's own fields; other plain names are read from `source`.
const ENVELOPE: &[&str] = &["op", "ts_ms", "ts_us", "ts_ns", "transaction"];

fn metas(list: Vec<String>, prefix: &str) -> Vec<Meta> {
    list.into_iter()
        .map(|f| match f.split_once('.') {
            Some((s, field)) => Meta {
                in_source: s == "source",
                field: field.to_string(),
                name: format!("{prefix}{s}_{field}"),
            },
            None => Meta {
                in_source: !ENVELOPE.contains(&f.as_str()),
                name: format!("{prefix}{f}"),
                field: f,
            },
        })
        .collect()
}

pub fn parse<'a>(
    get: &dyn Fn(&str) -> Option<&'a String>,
    key: &dyn Fn(&str) -> String,
) -> Result<Config, ConnectError> {
    let bad = |k: &str, m: String| ConnectError::BadConfig(format!("{}: {m}", key(k)));
    let one_of = |k: &str, valid: &[&str]| -> Result<Option<String>, ConnectError> {
        match get(k).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) if valid.contains(&v.as_str()) => Ok(Some(v)),
            Some(v) => Err(bad(
                k,
                format!("invalid value {v:?} (valid: {})", valid.join(", ")),
            )),
        }
    };
    let drop_tombstones =
        one_of("drop.tombstones", &["true", "false"])?.as_deref() != Some("false");
    let legacy = one_of("delete.handling.mode", &["drop", "none", "rewrite"])?;
    let mode = one_of(
        "delete.tombstone.handling.mode",
        &[
            "drop",
            "tombstone",
            "rewrite",
            "rewrite-with-tombstone",
            "delete-to-tombstone",
        ],
    )?;
    let (deletes, keep_tombstones) = match (mode.as_deref(), legacy.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "delete.handling.mode",
                format!(
                    "set either {} or this older key, not both",
                    key("delete.tombstone.handling.mode")
                ),
            ));
        }
        (Some("drop"), None) => (Deletes::Drop, false),
        (Some("tombstone" | "delete-to-tombstone"), None) => (Deletes::Null, false),
        (Some("rewrite"), None) => (Deletes::Rewrite, false),
        (Some(_), None) => (Deletes::Rewrite, true),
        (None, Some("none")) => (Deletes::Null, !drop_tombstones),
        (None, Some("rewrite")) => (Deletes::Rewrite, !drop_tombstones),
        (None, _) => (Deletes::Drop, !drop_tombstones),
    };
    let prefix = |k: &str| get(k).cloned().unwrap_or_else(|| "__".into());
    let fields = metas(super::list(get("add.fields")), &prefix("add.fields.prefix"));
    let headers = metas(
        super::list(get("add.headers")),
        &prefix("add.headers.prefix"),
    );
    let route_by = get("route.by.field")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    for k in ["replace.null.with.default", "drop.fields.from.key"] {
        if let Some(v) = get(k)
            && !matches!(v.trim(), "" | "true" | "false")
        {
            return Err(bad(
                k,
                format!("invalid value {v:?}: expected true or false"),
            ));
        }
    }
    if get("drop.fields.header.name").is_some_and(|v| !v.trim().is_empty()) {
        return Err(bad(
            "drop.fields.header.name",
            "is not supported (fields are never dropped by header)".into(),
        ));
    }
    Ok(Config {
        deletes,
        keep_tombstones,
        fields,
        headers,
        route_by,
    })
}

/// The schema of `name` among a struct schema's fields (without its `field` key), optional.
fn field_schema(schema: Option<&Value>, name: &str) -> Option<Value> {
    let f = schema?
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(name))?;
    let mut f = f.clone();
    let o = f.as_object_mut()?;
    o.remove("field");
    Some(f)
}

/// A header's bytes: a string as its text, anything else as its JSON (null: none).
fn header_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// Applies the transform; `false` drops the record.
pub fn apply(c: &Config, r: &mut Rec) -> Result<bool, String> {
    if r.value.is_null() {
        return Ok(c.keep_tombstones);
    }
    let (schema, value) = r.value.structured("ExtractNewRecordState")?;
    let Some(env) = value.as_object() else {
        return Ok(true);
    };
    let Some(op) = env.get("op").and_then(Value::as_str).map(str::to_string) else {
        return Ok(true);
    };
    if !env.contains_key("after") && !env.contains_key("before") {
        return Ok(true);
    }
    if op == "t" || op == "m" {
        // Truncates (and messages) have no row.
        return Ok(false);
    }
    let delete = op == "d";
    if delete && c.deletes == Deletes::Drop {
        return Ok(false);
    }
    let env_schema = schema.take();
    let mut env = std::mem::take(value)
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let source = env.get("source").cloned().unwrap_or(Value::Null);
    let source_schema = field_schema(env_schema.as_ref(), "source");
    let read_meta = |m: &Meta| -> (Value, Option<Value>) {
        if m.in_source {
            (
                source.get(&m.field).cloned().unwrap_or(Value::Null),
                field_schema(source_schema.as_ref(), &m.field),
            )
        } else {
            (
                env.get(&m.field).cloned().unwrap_or(Value::Null),
                field_schema(env_schema.as_ref(), &m.field),
            )
        }
    };
    let metas: Vec<(Value, Option<Value>)> = c.fields.iter().map(read_meta).collect();
    for m in &c.headers {
        let (v, _) = read_meta(m);
        r.headers.push((m.name.clone(), header_bytes(&v)));
    }
    let side = if delete && c.deletes == Deletes::Rewrite {
        "before"
    } else {
        "after"
    };
    let row_schema = field_schema(env_schema.as_ref(), side);
    let row = env.remove(side).unwrap_or(Value::Null);
    if delete && c.deletes == Deletes::Null {
        // The delete as a record with a null value (and no schema): sinks read it as a delete.
        r.value = crate::convert::Data::Json {
            schema: None,
            value: Value::Null,
        };
        return Ok(true);
    }
    let Value::Object(mut row) = row else {
        return Err(format!(
            "ExtractNewRecordState: the change event's {side} is {row}, not a row"
        ));
    };
    let mut row_schema = row_schema;
    let mut add = |name: &str, v: Value, s: Option<Value>, row: &mut Map<String, Value>| {
        row.insert(name.to_string(), v);
        if let Some(fields) = row_schema
            .as_mut()
            .and_then(|s| s.get_mut("fields"))
            .and_then(Value::as_array_mut)
        {
            let mut s = s.unwrap_or_else(|| json!({"type": "string"}));
            if let Some(o) = s.as_object_mut() {
                o.insert("optional".into(), Value::Bool(true));
                o.insert("field".into(), Value::String(name.to_string()));
            }
            fields.retain(|f| f.get("field").and_then(Value::as_str) != Some(name));
            fields.push(s);
        }
    };
    for (m, (v, s)) in c.fields.iter().zip(metas) {
        add(&m.name, v, s, &mut row);
    }
    if c.deletes == Deletes::Rewrite {
        let deleted = if delete { "true" } else { "false" };
        add(
            "__deleted",
            Value::String(deleted.into()),
            Some(json!({"type": "string"})),
            &mut row,
        );
    }
    if let Some(f) = &c.route_by {
        match row.get(f) {
            Some(Value::String(t)) if !t.is_empty() => r.topic = t.clone(),
            Some(Value::Null) | None => {
                return Err(format!(
                    "ExtractNewRecordState: route.by.field {f:?} is not set in this row"
                ));
            }
            Some(other) => r.topic = other.to_string(),
        }
    }
    r.value = crate::convert::Data::Json {
        schema: row_schema,
        value: Value::Object(row),
    };
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::super::{Chain, Rec};
    use crate::ConnectError;
    use crate::convert::Data;

    const CLASS: &str = "io.debezium.transforms.ExtractNewRecordState";

    fn no_wasm(_: &str) -> Result<(), ConnectError> {
        Err(ConnectError::BadConfig("not a transform plugin".into()))
    }

    fn chain(keys: &[(&str, &str)]) -> Result<Chain, String> {
        let mut c: BTreeMap<String, String> = BTreeMap::new();
        c.insert("transforms".into(), "unwrap".into());
        c.insert("transforms.unwrap.type".into(), CLASS.into());
        for (k, v) in keys {
            c.insert(format!("transforms.unwrap.{k}"), v.to_string());
        }
        Chain::parse(&c, &no_wasm).map_err(|e| e.to_string())
    }

    fn run(keys: &[(&str, &str)], recs: Vec<Rec>) -> Vec<Rec> {
        chain(keys)
            .unwrap()
            .apply(
                recs,
                &mut |_, _| panic!("no wasm step"),
                &mut |_, _, e: String| Err(e),
            )
            .unwrap()
    }

    fn row_schema() -> Value {
        json!({"type": "struct", "name": "shop.public.t.Value", "optional": true, "fields": [
            {"field": "id", "type": "int32", "optional": false},
            {"field": "v", "type": "string", "optional": true}]})
    }

    /// A change event as postgres-source writes it (JsonConverter with schemas).
    fn event(op: &str, before: Value, after: Value) -> Rec {
        let mut b = row_schema();
        b["field"] = json!("before");
        let mut a = row_schema();
        a["field"] = json!("after");
        let schema = json!({"type": "struct", "name": "shop.public.t.Envelope", "optional": false, "fields": [
            b, a,
            {"field": "source", "type": "struct", "optional": false, "name": "io.debezium.connector.postgresql.Source", "fields": [
                {"field": "ts_ms", "type": "int64", "optional": false},
                {"field": "table", "type": "string", "optional": false},
                {"field": "lsn", "type": "int64", "optional": true}]},
            {"field": "op", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": true}]});
        Rec {
            topic: "shop.public.t".into(),
            partition: None,
            offset: None,
            timestamp: 1,
            key: Data::Json {
                schema: None,
                value: json!({"id": 1}),
            },
            value: Data::Json {
                schema: Some(schema),
                value: json!({"before": before, "after": after, "op": op, "ts_ms": 99,
                              "source": {"ts_ms": 42, "table": "t", "lsn": 7}}),
            },
            headers: Vec::new(),
            source_partition: None,
            source_offset: None,
            origin: None,
        }
    }

    fn tombstone() -> Rec {
        let mut r = event("d", Value::Null, Value::Null);
        r.value = Data::Raw(None);
        r
    }

    fn value(r: &Rec) -> (Option<Value>, Value) {
        match &r.value {
            Data::Json { schema, value } => (schema.clone(), value.clone()),
            Data::Raw(None) => (None, Value::Null),
            other => panic!("not JSON: {other:?}"),
        }
    }

    fn stream() -> Vec<Rec> {
        vec![
            event("r", Value::Null, json!({"id": 1, "v": "a"})),
            event("u", Value::Null, json!({"id": 1, "v": "b"})),
            event("d", json!({"id": 1, "v": "b"}), Value::Null),
            tombstone(),
            event("t", Value::Null, Value::Null),
        ]
    }

    #[test]
    fn rows_after_the_change_and_deletes_dropped_by_default() {
        let out = run(&[], stream());
        assert_eq!(out.len(), 2, "delete, tombstone and truncate dropped");
        let (schema, v) = value(&out[1]);
        assert_eq!(v, json!({"id": 1, "v": "b"}));
        let mut want = row_schema();
        want["optional"] = json!(true);
        assert_eq!(
            schema,
            Some(want),
            "the after field's schema, without its name as a field"
        );
        assert_eq!(out[1].topic, "shop.public.t");
    }

    #[test]
    fn delete_handling_as_debeziums_keys_say() {
        let ops = |out: &[Rec]| -> Vec<Value> { out.iter().map(|r| value(r).1).collect() };
        // Legacy keys: none keeps the delete with a null value; tombstones kept on request.
        let out = run(
            &[
                ("delete.handling.mode", "none"),
                ("drop.tombstones", "false"),
            ],
            stream(),
        );
        assert_eq!(ops(&out)[2..], [Value::Null, Value::Null]);
        // rewrite: the before row with __deleted, every record marked.
        let out = run(&[("delete.handling.mode", "rewrite")], stream());
        assert_eq!(
            ops(&out),
            [
                json!({"id": 1, "v": "a", "__deleted": "false"}),
                json!({"id": 1, "v": "b", "__deleted": "false"}),
                json!({"id": 1, "v": "b", "__deleted": "true"}),
            ]
        );
        let (schema, _) = value(&out[2]);
        let last = schema.unwrap()["fields"][2].clone();
        assert_eq!(
            last,
            json!({"field": "__deleted", "type": "string", "optional": true})
        );
        // The newer key.
        for (mode, n, tombstone_kept) in [
            ("drop", 2, false),
            ("tombstone", 3, false),
            ("rewrite", 3, false),
            ("rewrite-with-tombstone", 4, true),
        ] {
            let out = run(&[("delete.tombstone.handling.mode", mode)], stream());
            assert_eq!(out.len(), n, "{mode}");
            assert_eq!(
                out.last()
                    .is_some_and(|r| r.value.is_null() && matches!(r.value, Data::Raw(None))),
                tombstone_kept,
                "{mode}"
            );
        }
    }

    #[test]
    fn metadata_fields_and_headers() {
        let out = run(
            &[
                ("add.fields", "op,table,source.ts_ms,lsn"),
                ("add.headers", "op,ts_ms"),
                ("add.headers.prefix", "dbz."),
            ],
            vec![event("u", Value::Null, json!({"id": 1, "v": "b"}))],
        );
        let (schema, v) = value(&out[0]);
        assert_eq!(
            v,
            json!({"id": 1, "v": "b", "__op": "u", "__table": "t", "__source_ts_ms": 42, "__lsn": 7})
        );
        let names: Vec<(String, String)> = schema.unwrap()["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().into(),
                    f["type"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            names[2..],
            [
                ("__op".to_string(), "string".to_string()),
                ("__table".into(), "string".into()),
                ("__source_ts_ms".into(), "int64".into()),
                ("__lsn".into(), "int64".into()),
            ]
        );
        assert_eq!(
            out[0].headers,
            [
                ("dbz.op".to_string(), Some(b"u".to_vec())),
                ("dbz.ts_ms".to_string(), Some(b"99".to_vec()))
            ]
        );
    }

    #[test]
    fn other_records_pass_and_routes_and_errors() {
        // A heartbeat (not a change event) passes unchanged.
        let mut hb = event("r", Value::Null, Value::Null);
        hb.value = Data::Json {
            schema: None,
            value: json!({"ts_ms": 5}),
        };
        let out = run(&[], vec![hb.clone()]);
        assert_eq!(out, [hb]);
        let out = run(
            &[("route.by.field", "v")],
            vec![event("c", Value::Null, json!({"id": 1, "v": "elsewhere"}))],
        );
        assert_eq!(out[0].topic, "elsewhere");
        let e = chain(&[
            ("delete.handling.mode", "rewrite"),
            ("delete.tombstone.handling.mode", "drop"),
        ])
        .err()
        .unwrap();
        assert!(e.contains("transforms.unwrap.delete.handling.mode"), "{e}");
        let e = chain(&[("delete.tombstone.handling.mode", "keep")])
            .err()
            .unwrap();
        assert!(e.contains("rewrite-with-tombstone"), "{e}");
    }
}
