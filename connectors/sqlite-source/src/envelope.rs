//! Debezium's change-event envelope, with its Connect schema (`weir.value.format=connect-json`),
//! so JsonConverter with `schemas.enable=true` writes what Debezium writes: key = the primary
//! key's columns; value = `{before, after, source, op, ts_ms}`.

use std::cell::RefCell;

use serde_json::{Map, Value, json};

use crate::literal::Lit;

/// A captured table's columns, as the change table's schema row recorded them.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// The declared type, as written in `CREATE TABLE` (may be empty).
    pub declared: String,
    /// Position in the primary key (1-based), 0 when not part of it.
    pub pk: u32,
    pub not_null: bool,
}

/// The Connect type a column's declared type means (SQLite's affinity rules, with `BOOL`
/// read as boolean).
pub fn connect_type(declared: &str) -> &'static str {
    let d = declared.to_ascii_uppercase();
    if d.contains("BOOL") {
        "boolean"
    } else if d.contains("INT") {
        "int64"
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "string"
    } else if d.contains("BLOB") {
        "bytes"
    } else if ["REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL"]
        .iter()
        .any(|x| d.contains(x))
    {
        "double"
    } else {
        // No or another declared type (DATE, DATETIME, JSON...): the value as text.
        "string"
    }
}

/// A value as the column's Connect type. SQLite's flexible typing can store a value that
/// does not fit (text in an INTEGER column): it is then given as text, and the record's
/// schema says so for that column.
fn typed(ty: &'static str, v: &Lit) -> (&'static str, Value) {
    match (ty, v) {
        (_, Lit::Null) => (ty, Value::Null),
        ("boolean", Lit::Int(i)) => (ty, Value::Bool(*i != 0)),
        ("int64", Lit::Int(i)) => (ty, json!(i)),
        ("int64", Lit::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (ty, json!(*f as i64)),
        ("double", Lit::Real(f)) if f.is_finite() => (ty, json!(f)),
        ("double", Lit::Int(i)) => (ty, json!(*i as f64)),
        ("bytes", Lit::Blob(b)) => (ty, Value::String(base64(b))),
        ("bytes", Lit::Text(s)) => (ty, Value::String(base64(s.as_bytes()))),
        ("string", Lit::Text(s)) => (ty, Value::String(s.clone())),
        (_, Lit::Blob(b)) => ("bytes", Value::String(base64(b))),
        (_, Lit::Text(s)) => ("string", Value::String(s.clone())),
        (_, Lit::Int(i)) => ("string", Value::String(i.to_string())),
        (_, Lit::Real(f)) => ("string", Value::String(lit_real(*f))),
    }
}

fn lit_real(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f:?}")
    }
}

pub use weir_cdc_common::base64;

/// A row image's columns (all, or the primary key's in key order), with their indexes.
fn columns(t: &Table, only_pk: bool) -> Vec<(usize, &ColumnDef)> {
    let mut cols: Vec<(usize, &ColumnDef)> = t.columns.iter().enumerate().collect();
    if only_pk {
        cols.retain(|(_, c)| c.pk > 0);
        cols.sort_by_key(|(_, c)| c.pk);
    }
    cols
}

/// A row image as a Connect struct's payload, and the Connect type each field got.
fn image(t: &Table, values: &[Lit], only_pk: bool) -> (Vec<&'static str>, Map<String, Value>) {
    let mut types = Vec::new();
    let mut payload = Map::new();
    for (i, c) in columns(t, only_pk) {
        let v = values.get(i).unwrap_or(&Lit::Null);
        let (ty, value) = typed(connect_type(&c.declared), v);
        types.push(ty);
        payload.insert(c.name.clone(), value);
    }
    (types, payload)
}

/// The Connect schema fields of a row image whose fields got `types`.
fn fields(t: &Table, types: &[&'static str], only_pk: bool) -> Vec<Value> {
    columns(t, only_pk)
        .into_iter()
        .zip(types)
        .map(|((_, c), ty)| json!({"field": c.name, "type": ty, "optional": !c.not_null && c.pk == 0}))
        .collect()
}

/// Whether an update changed the primary key (compared value by value).
pub fn key_changed(t: &Table, before: &[Lit], after: &[Lit]) -> bool {
    columns(t, true)
        .into_iter()
        .any(|(i, _)| before.get(i) != after.get(i))
}

/// Writes records' keys and values, keeping each schema's JSON text once per table and field
/// types (the schema is the same for every record of a table; only a value that does not fit
/// its declared type changes it).
#[derive(Debug, Default)]
pub struct Envelopes {
    keys: RefCell<Schemas>,
    values: RefCell<Schemas>,
}

/// Schema JSON texts by table name, then by field types.
type Schemas = std::collections::HashMap<String, Vec<(Vec<&'static str>, String)>>;

/// `{"schema":<the schema of these types, made once>,"payload":<payload>}`.
fn record(
    cache: &RefCell<Schemas>,
    table: &str,
    types: Vec<&'static str>,
    make: impl FnOnce(&[&'static str]) -> String,
    payload: &Value,
) -> Vec<u8> {
    let mut cache = cache.borrow_mut();
    let list = match cache.get_mut(table) {
        Some(l) => l,
        None => cache.entry(table.to_string()).or_default(),
    };
    let at = match list.iter().position(|(t, _)| *t == types) {
        Some(at) => at,
        None => {
            let text = make(&types);
            list.push((types, text));
            list.len() - 1
        }
    };
    format!("{{\"schema\":{},\"payload\":{payload}}}", list[at].1).into_bytes()
}

impl Envelopes {
    /// The key record (`{"schema","payload"}`) of a row, or none for a table without a
    /// primary key.
    pub fn key(&self, t: &Table, prefix: &str, values: &[Lit]) -> Option<Vec<u8>> {
        if !t.columns.iter().any(|c| c.pk > 0) {
            return None;
        }
        let (types, payload) = image(t, values, true);
        let make = |types: &[&'static str]| {
            json!({"type": "struct", "name": format!("{prefix}.main.{}.Key", t.name), "optional": false, "fields": fields(t, types, true)})
                .to_string()
        };
        Some(record(
            &self.keys,
            &t.name,
            types,
            make,
            &Value::Object(payload),
        ))
    }

    /// The value record of a change: op `c`, `u`, `d` or `r` with its before and after
    /// images.
    pub fn value(
        &self,
        t: &Table,
        op: &str,
        before: Option<&[Lit]>,
        after: Option<&[Lit]>,
        source: &Source<'_>,
        now_ms: i64,
    ) -> Vec<u8> {
        let before = before.map(|v| image(t, v, false));
        let after = after.map(|v| image(t, v, false));
        // The image schema: from whichever image exists (both agree unless a value did not
        // fit its declared type, when the after image's reading wins).
        let types = after
            .as_ref()
            .or(before.as_ref())
            .map(|(t, _)| t.clone())
            .unwrap_or_default();
        let prefix = source.prefix;
        let make = |types: &[&'static str]| {
            let name = format!("{prefix}.main.{}", t.name);
            let fields = fields(t, types, false);
            let row_schema = |field: &str| json!({"field": field, "type": "struct", "name": format!("{name}.Value"), "optional": true, "fields": fields});
            let mut src_schema = source_schema();
            src_schema["field"] = json!("source");
            json!({
                "type": "struct", "name": format!("{name}.Envelope"), "optional": false, "version": 1,
                "fields": [
                    row_schema("before"),
                    row_schema("after"),
                    src_schema,
                    {"field": "op", "type": "string", "optional": false},
                    {"field": "ts_ms", "type": "int64", "optional": true}
                ]
            })
            .to_string()
        };
        let payload = json!({
            "before": before.map_or(Value::Null, |(_, p)| Value::Object(p)),
            "after": after.map_or(Value::Null, |(_, p)| Value::Object(p)),
            "source": {
                "version": source.version,
                "connector": "sqlite",
                "name": source.prefix,
                "ts_ms": source.ts_ms,
                "snapshot": source.snapshot,
                "db": source.db,
                "schema": "main",
                "table": source.table,
                "txId": Value::Null,
                "lsn": source.seq,
            },
            "op": op,
            "ts_ms": now_ms,
        });
        record(&self.values, &t.name, types, make, &payload)
    }
}

/// Where a change came from: Debezium's `source` block.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub version: &'a str,
    pub prefix: &'a str,
    pub db: &'a str,
    pub table: &'a str,
    /// Commit time of the change (ms since the epoch).
    pub ts_ms: i64,
    /// `true`, `last`, or `false` when streaming.
    pub snapshot: &'a str,
    /// The change's position in the change table.
    pub seq: i64,
}

fn source_schema() -> Value {
    json!({
        "type": "struct", "name": "io.debezium.connector.sqlite.Source", "optional": false,
        "fields": [
            {"field": "version", "type": "string", "optional": false},
            {"field": "connector", "type": "string", "optional": false},
            {"field": "name", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": false},
            {"field": "snapshot", "type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false"},
            {"field": "db", "type": "string", "optional": false},
            {"field": "schema", "type": "string", "optional": false},
            {"field": "table", "type": "string", "optional": false},
            {"field": "txId", "type": "int64", "optional": true},
            {"field": "lsn", "type": "int64", "optional": true}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let col = |name: &str, declared: &str, pk: u32| ColumnDef {
            name: name.into(),
            declared: declared.into(),
            pk,
            not_null: false,
        };
        Table {
            name: "orders".into(),
            columns: vec![
                col("id", "INTEGER", 1),
                col("item", "TEXT", 0),
                col("price", "REAL", 0),
                col("paid", "BOOLEAN", 0),
                col("photo", "BLOB", 0),
            ],
        }
    }

    #[test]
    fn change_events_follow_debeziums_envelope() {
        let t = table();
        let row = [
            Lit::Int(7),
            Lit::Text("tea".into()),
            Lit::Real(2.5),
            Lit::Int(1),
            Lit::Blob(vec![1, 2, 3]),
        ];
        let e = Envelopes::default();
        let k: Value = serde_json::from_slice(&e.key(&t, "shop", &row).unwrap()).unwrap();
        assert_eq!(k["payload"], json!({"id": 7}));
        assert_eq!(k["schema"]["name"], "shop.main.orders.Key");
        assert_eq!(k["schema"]["fields"][0]["type"], "int64");
        let src = Source {
            version: "0.1.0",
            prefix: "shop",
            db: "shop.db",
            table: "orders",
            ts_ms: 5,
            snapshot: "false",
            seq: 42,
        };
        let v: Value =
            serde_json::from_slice(&e.value(&t, "c", None, Some(&row), &src, 9)).unwrap();
        let p = &v["payload"];
        assert_eq!(p["before"], Value::Null);
        assert_eq!(
            p["after"],
            json!({"id": 7, "item": "tea", "price": 2.5, "paid": true, "photo": "AQID"})
        );
        assert_eq!(p["op"], "c");
        assert_eq!(p["ts_ms"], 9);
        assert_eq!(p["source"]["lsn"], 42);
        assert_eq!(p["source"]["connector"], "sqlite");
        let s = &v["schema"];
        assert_eq!(s["name"], "shop.main.orders.Envelope");
        let names: Vec<&str> = s["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["before", "after", "source", "op", "ts_ms"]);
        assert_eq!(s["fields"][1]["fields"][3]["type"], "boolean");
        // A value that does not fit its declared type is given as text.
        let odd = [
            Lit::Int(8),
            Lit::Int(3),
            Lit::Text("n/a".into()),
            Lit::Null,
            Lit::Null,
        ];
        let v: Value =
            serde_json::from_slice(&e.value(&t, "u", Some(&row), Some(&odd), &src, 9)).unwrap();
        assert_eq!(v["payload"]["after"]["price"], "n/a");
        assert_eq!(v["schema"]["fields"][1]["fields"][2]["type"], "string");
        assert_eq!(v["payload"]["after"]["item"], "3");
        // The schema comes from the cache when the types are the ones seen before.
        let again: Value =
            serde_json::from_slice(&e.value(&t, "c", None, Some(&row), &src, 9)).unwrap();
        assert_eq!(again["schema"]["fields"][1]["fields"][2]["type"], "double");
        assert_eq!(e.values.borrow()["orders"].len(), 2);
        let mut moved = row.to_vec();
        moved[0] = Lit::Int(99);
        assert!(key_changed(&t, &row, &moved));
        assert!(!key_changed(
            &t,
            &row,
            &odd.iter()
                .enumerate()
                .map(|(i, v)| if i == 0 { Lit::Int(7) } else { v.clone() })
                .collect::<Vec<_>>()
        ));
    }
}
