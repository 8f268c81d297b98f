//! Debezium's change-event envelope for PostgreSQL, with its Connect schema
//! (`weir.value.format=connect-json`), so JsonConverter with `schemas.enable=true` writes what
//! Debezium writes: key = the primary key's columns; value = `{before, after, source, op,
//! ts_ms}`. A table's key and value schemas are written to JSON once and reused.

use std::io::Write as _;

use serde_json::{Value as J, json};
use weir_sdk::sql::ValueRef;

use crate::types::{Modes, PgType};

/// A captured table, from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: PgType,
    /// Position in the primary key (1-based), 0 when not part of it.
    pub pk: u32,
    pub not_null: bool,
    /// Left out of the value's `before` and `after` (`column.exclude.list`); a key column
    /// stays in the key.
    pub excluded: bool,
}

impl Table {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn has_key(&self) -> bool {
        self.columns.iter().any(|c| c.pk > 0)
    }

    /// The primary key's columns in key order, with their indexes.
    fn key_columns(&self) -> Vec<(usize, &ColumnDef)> {
        let mut cols: Vec<(usize, &ColumnDef)> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.pk > 0)
            .collect();
        cols.sort_by_key(|(_, c)| c.pk);
        cols
    }
}

pub use weir_cdc_common::base64;

/// A table's schemas as JSON text, made once.
#[derive(Debug, Clone)]
pub struct Schemas {
    pub topic: String,
    key: Option<String>,
    value: String,
    /// `"<column>":` for each column, escaped once.
    names: Vec<String>,
    /// The key's columns (indexes), in key order.
    key_cols: Vec<usize>,
    /// The value's columns (indexes), in table order.
    value_cols: Vec<usize>,
    /// `"schema":"<schema>","table":"<table>"` for the source block.
    place: String,
}

/// Appends `s` as a JSON string.
fn put_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Where a change came from: Debezium's `source` block.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub version: &'a str,
    pub prefix: &'a str,
    pub db: &'a str,
    /// Commit time (ms since the epoch).
    pub ts_ms: i64,
    /// `true`, `last`, or `false` when streaming.
    pub snapshot: &'a str,
    pub tx_id: Option<u32>,
    pub lsn: Option<u64>,
    /// The last confirmable position and the change's own, as Debezium's `sequence`.
    pub sequence: Option<(u64, u64)>,
}

fn source_schema() -> J {
    json!({
        "type": "struct", "name": "io.debezium.connector.postgresql.Source", "optional": false, "field": "source",
        "fields": [
            {"field": "version", "type": "string", "optional": false},
            {"field": "connector", "type": "string", "optional": false},
            {"field": "name", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": false},
            {"field": "snapshot", "type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false"},
            {"field": "db", "type": "string", "optional": false},
            {"field": "sequence", "type": "string", "optional": true},
            {"field": "schema", "type": "string", "optional": false},
            {"field": "table", "type": "string", "optional": false},
            {"field": "txId", "type": "int64", "optional": true},
            {"field": "lsn", "type": "int64", "optional": true},
            {"field": "xmin", "type": "int64", "optional": true}
        ]
    })
}

impl Schemas {
    pub fn new(t: &Table, prefix: &str, modes: Modes) -> Schemas {
        let name = format!("{prefix}.{}.{}", t.schema, t.name);
        let field = |c: &ColumnDef| {
            let mut f = c.ty.schema(modes);
            f["field"] = json!(c.name);
            // A key column is required when it cannot be null (a primary key's never can);
            // `message.key.columns` may name nullable ones.
            f["optional"] = json!(!c.not_null);
            f
        };
        let key = t.has_key().then(|| {
            let fields: Vec<J> = t.key_columns().into_iter().map(|(_, c)| field(c)).collect();
            json!({"type": "struct", "name": format!("{name}.Key"), "optional": false, "fields": fields})
                .to_string()
        });
        let fields: Vec<J> = t
            .columns
            .iter()
            .filter(|c| !c.excluded)
            .map(field)
            .collect();
        let row = |f: &str| json!({"field": f, "type": "struct", "name": format!("{name}.Value"), "optional": true, "fields": fields});
        let value = json!({
            "type": "struct", "name": format!("{name}.Envelope"), "optional": false, "version": 1,
            "fields": [
                row("before"),
                row("after"),
                source_schema(),
                {"field": "op", "type": "string", "optional": false},
                {"field": "ts_ms", "type": "int64", "optional": true}
            ]
        })
        .to_string();
        let names = t
            .columns
            .iter()
            .map(|c| format!("{}:", J::String(c.name.clone())))
            .collect();
        let key_cols = t.key_columns().into_iter().map(|(i, _)| i).collect();
        let value_cols = (0..t.columns.len())
            .filter(|&i| !t.columns[i].excluded)
            .collect();
        let place = format!(
            "\"schema\":{},\"table\":{}",
            J::String(t.schema.clone()),
            J::String(t.name.clone())
        );
        Schemas {
            topic: name,
            key,
            value,
            names,
            key_cols,
            value_cols,
            place,
        }
    }

    /// `{"<column>":<value>,...}` of a row image, in column order.
    fn image(&self, t: &Table, vals: &[Option<ValueRef<'_>>], m: Modes, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, &i) in self.value_cols.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.names[i].as_bytes());
            let v = vals.get(i).copied().unwrap_or(Some(ValueRef::Null));
            t.columns[i].ty.write_value(v, m, out);
        }
        out.push(b'}');
    }

    /// The key record of a row (none for a table without a primary key).
    pub fn key(&self, t: &Table, values: &[Option<ValueRef<'_>>], modes: Modes) -> Option<Vec<u8>> {
        let schema = self.key.as_ref()?;
        let mut out = Vec::with_capacity(schema.len() + 64);
        out.extend_from_slice(b"{\"schema\":");
        out.extend_from_slice(schema.as_bytes());
        out.extend_from_slice(b",\"payload\":{");
        for (n, &i) in self.key_cols.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.names[i].as_bytes());
            let v = values.get(i).copied().unwrap_or(Some(ValueRef::Null));
            t.columns[i].ty.write_value(v, modes, &mut out);
        }
        out.extend_from_slice(b"}}");
        Some(out)
    }

    /// The value record of a change (`c`, `u`, `d`, `r`, `t`), written in the schema's field
    /// order.
    #[allow(clippy::too_many_arguments)]
    pub fn value(
        &self,
        t: &Table,
        op: &str,
        before: Option<&[Option<ValueRef<'_>>]>,
        after: Option<&[Option<ValueRef<'_>>]>,
        src: &Source<'_>,
        modes: Modes,
        now_ms: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + 512);
        out.extend_from_slice(b"{\"schema\":");
        out.extend_from_slice(self.value.as_bytes());
        out.extend_from_slice(b",\"payload\":{\"before\":");
        match before {
            Some(v) => self.image(t, v, modes, &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"after\":");
        match after {
            Some(v) => self.image(t, v, modes, &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":{\"version\":");
        put_str(&mut out, src.version);
        out.extend_from_slice(b",\"connector\":\"postgresql\",\"name\":");
        put_str(&mut out, src.prefix);
        // Writing into a Vec cannot fail.
        let _ = write!(out, ",\"ts_ms\":{},\"snapshot\":", src.ts_ms);
        put_str(&mut out, src.snapshot);
        out.extend_from_slice(b",\"db\":");
        put_str(&mut out, src.db);
        out.extend_from_slice(b",\"sequence\":");
        match src.sequence {
            Some((a, b)) => {
                let _ = write!(out, "\"[\\\"{a}\\\",\\\"{b}\\\"]\"");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        out.extend_from_slice(self.place.as_bytes());
        out.extend_from_slice(b",\"txId\":");
        match src.tx_id {
            Some(x) => {
                let _ = write!(out, "{x}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"lsn\":");
        match src.lsn {
            Some(x) => {
                let _ = write!(out, "{x}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"xmin\":null},\"op\":");
        put_str(&mut out, op);
        let _ = write!(out, ",\"ts_ms\":{now_ms}}}}}");
        out
    }
}

/// Debezium's heartbeat record: key `{serverName}`, value `{ts_ms}`.
pub fn heartbeat(prefix: &str, now_ms: i64) -> (Vec<u8>, Vec<u8>) {
    let key = json!({
        "schema": {"type": "struct", "name": "io.debezium.connector.common.ServerNameKey", "optional": false,
                   "fields": [{"field": "serverName", "type": "string", "optional": false}]},
        "payload": {"serverName": prefix}
    });
    let value = json!({
        "schema": {"type": "struct", "name": "io.debezium.connector.common.Heartbeat", "optional": false,
                   "fields": [{"field": "ts_ms", "type": "int64", "optional": false}]},
        "payload": {"ts_ms": now_ms}
    });
    (key.to_string().into_bytes(), value.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_events_follow_debeziums_envelope() {
        let col = |name: &str, ty: &str, pk: u32| ColumnDef {
            name: name.into(),
            ty: PgType {
                name: ty.into(),
                typmod: -1,
                labels: None,
                elem: None,
            },
            pk,
            not_null: pk > 0,
            excluded: false,
        };
        let t = Table {
            schema: "public".into(),
            name: "items".into(),
            columns: vec![col("id", "int4", 1), col("name", "text", 0)],
        };
        let s = Schemas::new(&t, "shop", Modes::default());
        assert_eq!(s.topic, "shop.public.items");
        let row = [Some(ValueRef::Int(7)), Some(ValueRef::Text("a"))];
        let key: J = serde_json::from_slice(&s.key(&t, &row, Modes::default()).unwrap()).unwrap();
        assert_eq!(key["payload"], json!({"id": 7}));
        assert_eq!(key["schema"]["name"], "shop.public.items.Key");
        assert_eq!(key["schema"]["fields"][0]["type"], "int32");
        let src = Source {
            version: "1",
            prefix: "shop",
            db: "app",
            ts_ms: 5,
            snapshot: "false",
            tx_id: Some(9),
            lsn: Some(100),
            sequence: Some((90, 100)),
        };
        let v: J =
            serde_json::from_slice(&s.value(&t, "u", None, Some(&row), &src, Modes::default(), 6))
                .unwrap();
        let p = &v["payload"];
        assert_eq!(p["after"], json!({"id": 7, "name": "a"}));
        assert_eq!(p["before"], J::Null);
        assert_eq!(p["op"], "u");
        assert_eq!(p["source"]["connector"], "postgresql");
        assert_eq!(p["source"]["schema"], "public");
        assert_eq!(p["source"]["txId"], 9);
        assert_eq!(p["source"]["lsn"], 100);
        assert_eq!(p["source"]["sequence"], "[\"90\",\"100\"]");
        let fields: Vec<&str> = v["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["before", "after", "source", "op", "ts_ms"]);
        assert_eq!(v["schema"]["fields"][1]["fields"][1]["optional"], true);
        assert_eq!(v["schema"]["fields"][1]["fields"][0]["optional"], false);
    }

    #[test]
    fn excluded_columns_leave_the_value_but_not_the_key() {
        let col = |name: &str, pk: u32, excluded: bool| ColumnDef {
            name: name.into(),
            ty: PgType {
                name: "int4".into(),
                typmod: -1,
                labels: None,
                elem: None,
            },
            pk,
            not_null: true,
            excluded,
        };
        let t = Table {
            schema: "public".into(),
            name: "t".into(),
            columns: vec![col("id", 1, true), col("a", 0, false), col("b", 0, true)],
        };
        let s = Schemas::new(&t, "p", Modes::default());
        let row = [
            Some(ValueRef::Int(1)),
            Some(ValueRef::Int(2)),
            Some(ValueRef::Int(3)),
        ];
        let key: J = serde_json::from_slice(&s.key(&t, &row, Modes::default()).unwrap()).unwrap();
        assert_eq!(key["payload"], json!({"id": 1}));
        let src = Source {
            version: "1",
            prefix: "p",
            db: "d",
            ts_ms: 0,
            snapshot: "false",
            tx_id: None,
            lsn: None,
            sequence: None,
        };
        let v: J =
            serde_json::from_slice(&s.value(&t, "c", None, Some(&row), &src, Modes::default(), 0))
                .unwrap();
        assert_eq!(v["payload"]["after"], json!({"a": 2}));
        assert_eq!(
            v["schema"]["fields"][1]["fields"].as_array().unwrap().len(),
            1
        );
        assert_eq!(v["payload"]["source"]["txId"], J::Null);
    }
}
