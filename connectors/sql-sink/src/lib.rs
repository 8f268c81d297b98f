//! `sql-sink`: writes topics into PostgreSQL or SQLite tables, with the Debezium JDBC sink's
//! class name and keys, so a change stream captured from one database replicates into another
//! with two connector configs.
//!
//! Records arrive as Connect JSON (`{"schema", "payload"}`, the plugin declares
//! `connect-json`): a Debezium change event (`op`, `before`, `after`, `source`) writes its
//! `after` row (`c`, `r`, `u`), deletes its key (`d`, with `delete.enabled`) or empties the
//! table (`t`, with `truncate.enabled`); any other struct is a row; a tombstone deletes its key
//! (with `delete.enabled`). Each batch is one transaction. With `schema.evolution=basic` a
//! missing table is created from the record's Connect schema (primary key from the key) and a
//! missing column added. Rows are written in `insert`, `upsert` (`INSERT ... ON CONFLICT DO
//! UPDATE`, so a batch written twice after a crash leaves the same rows) or `update` mode.
//! The database is the SQL grant `db`, which the runtime derives from `connection.url`
//! (`jdbc:postgresql://host:port/db`, `jdbc:sqlite:/path`), `connection.username` and
//! `connection.password`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as J};
use weir_sdk::sql::{Connection, Rows, Value as P};
use weir_sdk::{
    Batch, Config, ConfigError, ConfigType, Descriptor, Error, LogPosition, PluginKind, Sink,
};

const GRANT: &str = "db";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsertMode {
    Insert,
    Upsert,
    Update,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkMode {
    None,
    Kafka,
    RecordKey,
    RecordValue,
}

#[derive(Debug)]
struct Settings {
    insert: InsertMode,
    pk_mode: PkMode,
    pk_fields: Vec<String>,
    delete: bool,
    truncate: bool,
    evolve: bool,
    table_format: String,
    /// `quote.identifiers`: names as written; else PostgreSQL's unquoted names (lower case).
    quote: bool,
    /// `field.include.list` / `field.exclude.list`: `(topic, field)`.
    field_include: Vec<(String, String)>,
    field_exclude: Vec<(String, String)>,
    /// `use.reduction.buffer`: of a batch's records with the same key, only the last is written.
    reduce: bool,
}

fn err(key: &str, message: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let get = |k: &str| weir_sdk::config_get(config, k).map(str::trim);
        let insert = match get("insert.mode").unwrap_or("insert") {
            "insert" => InsertMode::Insert,
            "upsert" => InsertMode::Upsert,
            "update" => InsertMode::Update,
            other => {
                errors.push(err(
                    "insert.mode",
                    &format!("{other:?} is not one of insert, upsert, update"),
                ));
                InsertMode::Insert
            }
        };
        let pk_mode = match get("primary.key.mode").unwrap_or("none") {
            "none" => PkMode::None,
            "kafka" => PkMode::Kafka,
            "record_key" => PkMode::RecordKey,
            "record_value" => PkMode::RecordValue,
            other => {
                errors.push(err(
                    "primary.key.mode",
                    &format!("{other:?} is not one of none, kafka, record_key, record_value"),
                ));
                PkMode::None
            }
        };
        let pk_fields: Vec<String> = get("primary.key.fields")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let flag = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let delete = flag("delete.enabled");
        let truncate = flag("truncate.enabled");
        let evolve = match get("schema.evolution").unwrap_or("none") {
            "none" => false,
            "basic" => true,
            other => {
                errors.push(err(
                    "schema.evolution",
                    &format!("{other:?} is not one of none, basic"),
                ));
                false
            }
        };
        if delete && pk_mode != PkMode::RecordKey {
            errors.push(err(
                "delete.enabled",
                "needs primary.key.mode=record_key (as Debezium's JDBC sink)",
            ));
        }
        if insert != InsertMode::Insert && pk_mode == PkMode::None {
            errors.push(err(
                "primary.key.mode",
                "upsert and update need a primary key (record_key, record_value or kafka)",
            ));
        }
        if pk_mode == PkMode::RecordValue && pk_fields.is_empty() {
            errors.push(err(
                "primary.key.fields",
                "required with primary.key.mode=record_value",
            ));
        }
        let table_format = match (get("collection.name.format"), get("table.name.format")) {
            (Some(_), Some(_)) => {
                errors.push(err(
                    "table.name.format",
                    "is the older name of collection.name.format: set one",
                ));
                String::new()
            }
            (Some(f), None) | (None, Some(f)) => f.to_string(),
            (None, None) => "${topic}".to_string(),
        };
        let quote = flag("quote.identifiers");
        let reduce = flag("use.reduction.buffer");
        let mut topic_fields = |key: &str| -> Vec<(String, String)> {
            let mut out = Vec::new();
            for f in get(key).unwrap_or("").split(',').map(str::trim) {
                if f.is_empty() {
                    continue;
                }
                match f.split_once(':') {
                    Some((t, c)) if !t.is_empty() && !c.is_empty() => {
                        out.push((t.to_string(), c.to_string()))
                    }
                    _ => errors.push(err(key, &format!("{f:?} is not <topic>:<field>"))),
                }
            }
            out
        };
        let field_include = topic_fields("field.include.list");
        let field_exclude = topic_fields("field.exclude.list");
        if !field_include.is_empty() && !field_exclude.is_empty() {
            errors.push(err(
                "field.exclude.list",
                "cannot be used with field.include.list (as Debezium)",
            ));
        }
        if let Some(tz) = get("database.time_zone")
            && !matches!(tz, "UTC" | "Z" | "GMT" | "Etc/UTC")
        {
            errors.push(err(
                "database.time_zone",
                &format!("{tz:?} is not supported yet: values are written in UTC"),
            ));
        }
        for (key, default) in [
            (
                "collection.naming.strategy",
                "io.debezium.connector.jdbc.naming.DefaultCollectionNamingStrategy",
            ),
            (
                "table.naming.strategy",
                "io.debezium.connector.jdbc.naming.DefaultTableNamingStrategy",
            ),
            (
                "column.naming.strategy",
                "io.debezium.connector.jdbc.naming.DefaultColumnNamingStrategy",
            ),
        ] {
            if let Some(v) = get(key)
                && v != default
            {
                errors.push(err(
                    key,
                    &format!("only {default} (custom Java classes cannot run here)"),
                ));
            }
        }
        for key in [
            "batch.size",
            "connection.pool.min_size",
            "connection.pool.max_size",
            "connection.pool.acquire_increment",
            "connection.pool.timeout",
            "flush.max.retries",
            "flush.retry.delay.ms",
        ] {
            if let Some(v) = get(key)
                && v.parse::<u64>().is_err()
            {
                errors.push(err(key, "a whole number"));
            }
        }
        if errors.is_empty() {
            Ok(Settings {
                insert,
                pk_mode,
                pk_fields,
                delete,
                truncate,
                evolve,
                table_format,
                quote,
                field_include,
                field_exclude,
                reduce,
            })
        } else {
            Err(errors)
        }
    }

    /// The table a topic's records go to: `table.name.format` with `${topic}`, dots made
    /// underscores (Debezium's default naming).
    fn table(&self, topic: &str) -> String {
        self.table_format
            .replace("${topic}", topic)
            .replace('.', "_")
    }

    /// Whether a value field of `topic` is written (`field.include.list`,
    /// `field.exclude.list`); key fields always are.
    fn writes(&self, topic: &str, field: &str) -> bool {
        let hit = |l: &[(String, String)]| l.iter().any(|(t, f)| t == topic && f == field);
        if self.field_include.is_empty() {
            !hit(&self.field_exclude)
        } else {
            hit(&self.field_include)
        }
    }
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A column of a table as the sink knows it: its name and SQL type.
#[derive(Debug, Clone, PartialEq)]
struct Col {
    name: String,
    /// The Connect schema of the field (type, name, parameters).
    schema: J,
}

/// What one record asks for.
enum Action {
    /// Write a row (columns and their values in order).
    Row {
        cols: Vec<Col>,
        values: Vec<J>,
        key: Vec<(Col, J)>,
    },
    Delete {
        key: Vec<(Col, J)>,
    },
    Truncate,
    Skip,
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let b: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

/// A big-endian two's complement integer at `scale` as decimal text.
fn decimal_text(bytes: &[u8], scale: u32) -> String {
    let neg = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut mag: Vec<u8> = if neg {
        // Negate: invert and add one.
        let mut v: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in v.iter_mut().rev() {
            let (x, carry) = b.overflowing_add(1);
            *b = x;
            if !carry {
                break;
            }
        }
        v
    } else {
        bytes.to_vec()
    };
    // Base-256 to base-10 by repeated division.
    let mut digits = Vec::new();
    while mag.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    while digits.len() <= scale as usize {
        digits.push(b'0');
    }
    digits.reverse();
    let s = String::from_utf8(digits).unwrap_or_default();
    let (int, frac) = s.split_at(s.len() - scale as usize);
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if neg { format!("-{body}") } else { body }
}

fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

fn clock(micros: i64) -> String {
    let (s, us) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let mut out = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    out
}

/// A Connect field's SQL type in `dialect`.
fn sql_type(schema: &J, dialect: &str) -> &'static str {
    let pg = dialect == "postgres";
    let name = schema["name"].as_str().unwrap_or("");
    match name {
        "org.apache.kafka.connect.data.Decimal" | "io.debezium.data.VariableScaleDecimal" => {
            "NUMERIC"
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => "DATE",
        "io.debezium.time.Timestamp"
        | "io.debezium.time.MicroTimestamp"
        | "io.debezium.time.NanoTimestamp"
        | "org.apache.kafka.connect.data.Timestamp" => "TIMESTAMP",
        "io.debezium.time.ZonedTimestamp" if pg => "TIMESTAMPTZ",
        "io.debezium.time.Time"
        | "io.debezium.time.MicroTime"
        | "org.apache.kafka.connect.data.Time" => "TIME",
        "io.debezium.time.ZonedTime" if pg => "TIMETZ",
        "io.debezium.data.Json" if pg => "JSONB",
        "io.debezium.data.Uuid" if pg => "UUID",
        "io.debezium.time.MicroDuration" | "io.debezium.time.Interval" if pg => "INTERVAL",
        _ => match schema["type"].as_str().unwrap_or("string") {
            "int8" | "int16" => "SMALLINT",
            "int32" => "INTEGER",
            "int64" => "BIGINT",
            "float" | "float32" => "REAL",
            "double" | "float64" => "DOUBLE PRECISION",
            "boolean" => "BOOLEAN",
            "bytes" if pg => "BYTEA",
            "bytes" => "BLOB",
            "array" | "map" | "struct" if pg => "JSONB",
            _ => "TEXT",
        },
    }
}

/// A JSON value of a Connect field as a statement parameter (and the SQL type to cast it
/// to on PostgreSQL).
fn param(schema: &J, v: &J, dialect: &str) -> P {
    if v.is_null() {
        return P::Null;
    }
    let name = schema["name"].as_str().unwrap_or("");
    let int = v.as_i64();
    match (name, v) {
        ("org.apache.kafka.connect.data.Decimal", J::String(s)) => {
            let scale = schema["parameters"]["scale"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            base64_decode(s).map_or(P::Null, |b| P::Text(decimal_text(&b, scale)))
        }
        ("io.debezium.data.VariableScaleDecimal", J::Object(o)) => {
            let scale = o.get("scale").and_then(J::as_u64).unwrap_or(0) as u32;
            o.get("value")
                .and_then(J::as_str)
                .and_then(base64_decode)
                .map_or(P::Null, |b| P::Text(decimal_text(&b, scale)))
        }
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) if int.is_some() => {
            P::Text(civil(int.unwrap_or(0)))
        }
        ("io.debezium.time.MicroTimestamp", _) if int.is_some() => {
            let us = int.unwrap_or(0);
            P::Text(format!(
                "{} {}",
                civil(us.div_euclid(86_400_000_000)),
                clock(us.rem_euclid(86_400_000_000))
            ))
        }
        ("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp", _)
            if int.is_some() =>
        {
            let us = int.unwrap_or(0) * 1000;
            P::Text(format!(
                "{} {}",
                civil(us.div_euclid(86_400_000_000)),
                clock(us.rem_euclid(86_400_000_000))
            ))
        }
        ("io.debezium.time.MicroTime", _) if int.is_some() => P::Text(clock(int.unwrap_or(0))),
        ("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time", _) if int.is_some() => {
            P::Text(clock(int.unwrap_or(0) * 1000))
        }
        ("io.debezium.time.MicroDuration", _) if int.is_some() && dialect == "postgres" => {
            P::Text(format!("{} microseconds", int.unwrap_or(0)))
        }
        (_, J::Bool(b)) => P::Boolean(*b),
        (_, J::Number(n)) => match n.as_i64() {
            Some(i) => P::Int(i),
            None => P::Float(n.as_f64().unwrap_or(0.0)),
        },
        (_, J::String(s)) if schema["type"] == "bytes" => {
            base64_decode(s).map_or(P::Null, P::Bytes)
        }
        (_, J::String(s)) => P::Text(s.clone()),
        (_, other) => P::Text(other.to_string()),
    }
}

/// The fields of a struct schema, by name.
fn fields(schema: &J) -> Vec<Col> {
    schema["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| Col {
                    name: f["field"].as_str().unwrap_or_default().to_string(),
                    schema: f.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Connect JSON document: its schema and payload (schemaless: no schema).
fn split(doc: Option<&[u8]>) -> Result<Option<(J, J)>, String> {
    let Some(b) = doc else { return Ok(None) };
    let v: J = serde_json::from_slice(b).map_err(|e| format!("not JSON: {e}"))?;
    Ok(Some(match v {
        J::Object(mut o) if o.contains_key("payload") && o.contains_key("schema") => (
            o.remove("schema").unwrap_or(J::Null),
            o.remove("payload").unwrap_or(J::Null),
        ),
        other => (J::Null, other),
    }))
}

/// Columns from a schemaless object: every field, typed by its value.
fn inferred(row: &Map<String, J>) -> Vec<Col> {
    row.iter()
        .map(|(k, v)| Col {
            name: k.clone(),
            schema: serde_json::json!({"field": k, "type": match v {
                J::Bool(_) => "boolean",
                J::Number(n) if n.is_i64() => "int64",
                J::Number(_) => "double",
                _ => "string",
            }}),
        })
        .collect()
}

struct SqlSink {
    s: Settings,
    db: Connection,
    dialect: String,
    /// Tables known to exist, with their columns (lower-cased for comparison).
    tables: HashMap<String, Vec<String>>,
    /// Positions written in committed transactions.
    written: BTreeMap<(String, i32), i64>,
}

impl SqlSink {
    /// What a record asks for.
    fn action(&self, r: &weir_sdk::RecordRef<'_>) -> Result<Action, String> {
        let key = split(r.key())?;
        let value = split(r.value())?;
        let key_cols = |row: Option<&J>, schema: Option<&J>| -> Vec<(Col, J)> {
            match self.s.pk_mode {
                PkMode::RecordKey => match &key {
                    Some((ks, kp)) => {
                        let cols = if ks.is_null() {
                            kp.as_object().map(inferred).unwrap_or_default()
                        } else {
                            fields(ks)
                        };
                        cols.into_iter()
                            .map(|c| {
                                let v = kp.get(&c.name).cloned().unwrap_or(J::Null);
                                (c, v)
                            })
                            .collect()
                    }
                    None => Vec::new(),
                },
                PkMode::RecordValue => {
                    let cols = schema.map(fields).unwrap_or_default();
                    self.s
                        .pk_fields
                        .iter()
                        .filter_map(|f| {
                            let c = cols.iter().find(|c| &c.name == f)?.clone();
                            let v = row.and_then(|r| r.get(f)).cloned().unwrap_or(J::Null);
                            Some((c, v))
                        })
                        .collect()
                }
                PkMode::Kafka => vec![
                    (
                        Col {
                            name: "__connect_topic".into(),
                            schema: serde_json::json!({"type": "string"}),
                        },
                        J::String(r.topic().to_string()),
                    ),
                    (
                        Col {
                            name: "__connect_partition".into(),
                            schema: serde_json::json!({"type": "int32"}),
                        },
                        J::from(r.partition().unwrap_or(0)),
                    ),
                    (
                        Col {
                            name: "__connect_offset".into(),
                            schema: serde_json::json!({"type": "int64"}),
                        },
                        J::from(r.offset().unwrap_or(0)),
                    ),
                ],
                PkMode::None => Vec::new(),
            }
        };
        let Some((vs, vp)) = value else {
            // A tombstone.
            return Ok(if self.s.delete {
                Action::Delete {
                    key: key_cols(None, None),
                }
            } else {
                Action::Skip
            });
        };
        // A Debezium change event?
        let envelope = vp.get("op").and_then(J::as_str).is_some()
            && vp.get("source").is_some()
            && (vp.get("after").is_some() || vp.get("before").is_some());
        let (row, row_schema) = if envelope {
            let op = vp["op"].as_str().unwrap_or("");
            let after_schema = fields(&vs).into_iter().find(|c| c.name == "after");
            match op {
                "c" | "r" | "u" => (vp["after"].clone(), after_schema.map(|c| c.schema)),
                "d" => {
                    return Ok(if self.s.delete {
                        Action::Delete {
                            key: key_cols(None, None),
                        }
                    } else {
                        Action::Skip
                    });
                }
                "t" => {
                    return Ok(if self.s.truncate {
                        Action::Truncate
                    } else {
                        Action::Skip
                    });
                }
                _ => return Ok(Action::Skip),
            }
        } else {
            (vp, (!vs.is_null()).then_some(vs))
        };
        let Some(obj) = row.as_object() else {
            return Err("the record's value is not a struct (an object)".into());
        };
        let cols: Vec<Col> = match &row_schema {
            Some(s) => fields(s),
            None => inferred(obj),
        };
        let key_names: Vec<String> = key_cols(Some(&row), row_schema.as_ref())
            .into_iter()
            .map(|(c, _)| c.name)
            .collect();
        let cols: Vec<Col> = cols
            .into_iter()
            .filter(|c| key_names.contains(&c.name) || self.s.writes(r.topic(), &c.name))
            .collect();
        let values = cols
            .iter()
            .map(|c| obj.get(&c.name).cloned().unwrap_or(J::Null))
            .collect();
        let key = key_cols(Some(&row), row_schema.as_ref());
        Ok(Action::Row { cols, values, key })
    }

    /// A name as the database keeps it: as written with `quote.identifiers`, else as
    /// PostgreSQL keeps an unquoted name (lower case; SQLite compares names without case).
    fn fold(&self, name: &str) -> String {
        if self.s.quote || self.dialect != "postgres" {
            name.to_string()
        } else {
            name.to_lowercase()
        }
    }

    /// An action with its names as the database keeps them.
    fn folded(&self, a: Action) -> Action {
        let fold_cols = |cols: Vec<Col>| -> Vec<Col> {
            cols.into_iter()
                .map(|c| Col {
                    name: self.fold(&c.name),
                    ..c
                })
                .collect()
        };
        let fold_key = |key: Vec<(Col, J)>| -> Vec<(Col, J)> {
            key.into_iter()
                .map(|(c, v)| {
                    (
                        Col {
                            name: self.fold(&c.name),
                            ..c
                        },
                        v,
                    )
                })
                .collect()
        };
        match a {
            Action::Row { cols, values, key } => Action::Row {
                cols: fold_cols(cols),
                values,
                key: fold_key(key),
            },
            Action::Delete { key } => Action::Delete { key: fold_key(key) },
            other => other,
        }
    }

    /// A table's columns in the database (none: no such table).
    fn columns_of(&self, table: &str) -> Result<Vec<String>, Error> {
        let sql = if self.dialect == "postgres" {
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
        } else {
            "SELECT name FROM pragma_table_info(?1)"
        };
        let cursor = self.db.query(sql, &[P::Text(table.to_string())])?;
        let mut names = Vec::new();
        while let Some(b) = cursor.next(1000)? {
            let rows = Rows::parse(&b).map_err(|e| Error::Fatal(e.to_string()))?;
            for r in rows.iter() {
                if let weir_sdk::sql::ValueRef::Text(t) = r.get(0) {
                    names.push(t.to_lowercase());
                }
            }
        }
        Ok(names)
    }

    /// Whether a table exists (cached once seen).
    fn exists(&mut self, table: &str) -> Result<bool, Error> {
        if self.tables.contains_key(table) {
            return Ok(true);
        }
        let cols = self.columns_of(table)?;
        if cols.is_empty() {
            return Ok(false);
        }
        self.tables.insert(table.to_string(), cols);
        Ok(true)
    }

    /// The table's columns, creating the table or adding columns when evolution allows.
    fn ensure(&mut self, table: &str, cols: &[Col], key: &[(Col, J)]) -> Result<(), Error> {
        if !self.tables.contains_key(table) {
            let existing = self.columns_of(table)?;
            if existing.is_empty() {
                if !self.s.evolve {
                    return Err(Error::Fatal(format!(
                        "table {table:?} does not exist; create it, or set schema.evolution=basic"
                    )));
                }
                let mut defs: Vec<String> = Vec::new();
                let mut names = Vec::new();
                for (c, _) in key {
                    if !cols.iter().any(|x| x.name == c.name) {
                        defs.push(format!(
                            "{} {} NOT NULL",
                            ident(&c.name),
                            sql_type(&c.schema, &self.dialect)
                        ));
                        names.push(c.name.to_lowercase());
                    }
                }
                for c in cols {
                    let not_null = key.iter().any(|(k, _)| k.name == c.name)
                        || c.schema["optional"] == J::Bool(false);
                    defs.push(format!(
                        "{} {}{}",
                        ident(&c.name),
                        sql_type(&c.schema, &self.dialect),
                        if not_null { " NOT NULL" } else { "" }
                    ));
                    names.push(c.name.to_lowercase());
                }
                if !key.is_empty() {
                    let pk: Vec<String> = key.iter().map(|(c, _)| ident(&c.name)).collect();
                    defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
                }
                self.db.execute(
                    &format!("CREATE TABLE {} ({})", ident(table), defs.join(", ")),
                    &[],
                )?;
                weir_sdk::log(weir_sdk::Level::Info, &format!("created table {table}"));
                self.tables.insert(table.to_string(), names);
                return Ok(());
            }
            self.tables.insert(table.to_string(), existing);
        }
        let known = self.tables.get(table).cloned().unwrap_or_default();
        let missing: Vec<&Col> = cols
            .iter()
            .filter(|c| !known.contains(&c.name.to_lowercase()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.s.evolve {
            return Err(Error::Fatal(format!(
                "table {table:?} has no column {:?}; add it, or set schema.evolution=basic",
                missing[0].name
            )));
        }
        for c in missing {
            self.db.execute(
                &format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    ident(table),
                    ident(&c.name),
                    sql_type(&c.schema, &self.dialect)
                ),
                &[],
            )?;
            if let Some(k) = self.tables.get_mut(table) {
                k.push(c.name.to_lowercase());
            }
        }
        Ok(())
    }

    /// Parameter `n`: `$n` cast to the column's type on PostgreSQL, `?n` on SQLite.
    fn placeholder(&self, n: usize, c: &Col) -> String {
        if self.dialect == "postgres" {
            format!("CAST(${n} AS {})", sql_type(&c.schema, &self.dialect))
        } else {
            format!("?{n}")
        }
    }

    fn write(&mut self, table: &str, action: Action) -> Result<(), Error> {
        match action {
            Action::Skip => Ok(()),
            Action::Truncate => {
                if self.exists(table)? {
                    self.db
                        .execute(&format!("DELETE FROM {}", ident(table)), &[])?;
                }
                Ok(())
            }
            Action::Delete { key } => {
                if key.is_empty() {
                    return Ok(());
                }
                if !self.exists(table)? {
                    // No table: nothing to delete.
                    return Ok(());
                }
                let conds: Vec<String> = key
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| {
                        format!("{} = {}", ident(&c.name), self.placeholder(i + 1, c))
                    })
                    .collect();
                let params: Vec<P> = key
                    .iter()
                    .map(|(c, v)| param(&c.schema, v, &self.dialect))
                    .collect();
                self.db.execute(
                    &format!("DELETE FROM {} WHERE {}", ident(table), conds.join(" AND ")),
                    &params,
                )?;
                Ok(())
            }
            Action::Row {
                mut cols,
                mut values,
                key,
            } => {
                // Key columns the row lacks (record_key, kafka) are written too.
                for (c, v) in &key {
                    if !cols.iter().any(|x| x.name == c.name) {
                        cols.push(c.clone());
                        values.push(v.clone());
                    }
                }
                self.ensure(table, &cols, &key)?;
                let params: Vec<P> = cols
                    .iter()
                    .zip(&values)
                    .map(|(c, v)| param(&c.schema, v, &self.dialect))
                    .collect();
                let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
                let marks: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.placeholder(i + 1, c))
                    .collect();
                let is_key = |c: &Col| key.iter().any(|(k, _)| k.name == c.name);
                let sql = match self.s.insert {
                    InsertMode::Insert => format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        ident(table),
                        names.join(", "),
                        marks.join(", ")
                    ),
                    InsertMode::Upsert => {
                        let pk: Vec<String> = key.iter().map(|(c, _)| ident(&c.name)).collect();
                        let sets: Vec<String> = cols
                            .iter()
                            .filter(|c| !is_key(c))
                            .map(|c| format!("{0} = excluded.{0}", ident(&c.name)))
                            .collect();
                        format!(
                            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {}",
                            ident(table),
                            names.join(", "),
                            marks.join(", "),
                            pk.join(", "),
                            if sets.is_empty() {
                                "NOTHING".to_string()
                            } else {
                                format!("UPDATE SET {}", sets.join(", "))
                            }
                        )
                    }
                    InsertMode::Update => {
                        let sets: Vec<String> = cols
                            .iter()
                            .zip(&marks)
                            .filter(|(c, _)| !is_key(c))
                            .map(|(c, m)| format!("{} = {m}", ident(&c.name)))
                            .collect();
                        let conds: Vec<String> = cols
                            .iter()
                            .zip(&marks)
                            .filter(|(c, _)| is_key(c))
                            .map(|(c, m)| format!("{} = {m}", ident(&c.name)))
                            .collect();
                        if sets.is_empty() || conds.is_empty() {
                            return Ok(());
                        }
                        format!(
                            "UPDATE {} SET {} WHERE {}",
                            ident(table),
                            sets.join(", "),
                            conds.join(" AND ")
                        )
                    }
                };
                self.db.execute(&sql, &params)?;
                Ok(())
            }
        }
    }
}

impl Sink for SqlSink {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "sql-sink",
            VERSION,
            PluginKind::Sink,
            "Writes topics into PostgreSQL or SQLite tables (Debezium's JDBC sink: upserts, deletes, change events)",
        );
        let key = |name: &str, ty: ConfigType, default: Option<&str>, doc: &str| {
            weir_sdk::config_key(name, ty, false, default, doc)
        };
        d.config = vec![
            key(
                "connection.url",
                ConfigType::String,
                None,
                "jdbc:postgresql://host:port/db or jdbc:sqlite:/path/file.db (the runtime grants it as weir.sql.db.url)",
            ),
            key(
                "connection.username",
                ConfigType::String,
                None,
                "The user (PostgreSQL)",
            ),
            key(
                "connection.password",
                ConfigType::Password,
                None,
                "Its password (best through a config provider)",
            ),
            key(
                "insert.mode",
                ConfigType::String,
                Some("insert"),
                "insert, upsert or update",
            ),
            key(
                "primary.key.mode",
                ConfigType::String,
                Some("none"),
                "none, kafka, record_key or record_value",
            ),
            key(
                "primary.key.fields",
                ConfigType::List,
                None,
                "The key's fields (record_value)",
            ),
            key(
                "delete.enabled",
                ConfigType::Boolean,
                Some("false"),
                "Tombstones and Debezium deletes delete the row (needs record_key)",
            ),
            key(
                "truncate.enabled",
                ConfigType::Boolean,
                Some("false"),
                "Debezium truncates empty the table",
            ),
            key(
                "schema.evolution",
                ConfigType::String,
                Some("none"),
                "none, or basic: create missing tables and columns",
            ),
            key(
                "table.name.format",
                ConfigType::String,
                Some("${topic}"),
                "The table for a topic (dots become underscores); the older name of collection.name.format",
            ),
            key(
                "collection.name.format",
                ConfigType::String,
                Some("${topic}"),
                "The table for a topic (dots become underscores)",
            ),
            key(
                "quote.identifiers",
                ConfigType::Boolean,
                Some("false"),
                "Names as written; false: as PostgreSQL keeps unquoted names (lower case)",
            ),
            key(
                "field.include.list",
                ConfigType::List,
                None,
                "<topic>:<field> of the value fields written (key fields always are)",
            ),
            key(
                "field.exclude.list",
                ConfigType::List,
                None,
                "<topic>:<field> of value fields not written",
            ),
            key(
                "use.reduction.buffer",
                ConfigType::Boolean,
                Some("false"),
                "Of a batch's records with the same key, write only the last",
            ),
            key(
                "database.time_zone",
                ConfigType::String,
                Some("UTC"),
                "Only UTC",
            ),
            key(
                "collection.naming.strategy",
                ConfigType::String,
                None,
                "Only Debezium's default class",
            ),
            key(
                "table.naming.strategy",
                ConfigType::String,
                None,
                "Only Debezium's default class",
            ),
            key(
                "column.naming.strategy",
                ConfigType::String,
                None,
                "Only Debezium's default class",
            ),
            key(
                "batch.size",
                ConfigType::Int,
                Some("500"),
                "Accepted: a batch the runtime delivers is written in one transaction",
            ),
            key(
                "connection.pool.min_size",
                ConfigType::Int,
                Some("5"),
                "Accepted: the host pools connections",
            ),
            key(
                "connection.pool.max_size",
                ConfigType::Int,
                Some("32"),
                "Accepted: the host pools connections",
            ),
            key(
                "connection.pool.acquire_increment",
                ConfigType::Int,
                Some("32"),
                "Accepted: the host pools connections",
            ),
            key(
                "connection.pool.timeout",
                ConfigType::Int,
                Some("1800"),
                "Accepted: the host pools connections",
            ),
            key(
                "flush.max.retries",
                ConfigType::Int,
                Some("5"),
                "Accepted: a failed batch is retried by the runtime (errors.retry.timeout)",
            ),
            key(
                "flush.retry.delay.ms",
                ConfigType::Int,
                Some("1000"),
                "Accepted, as flush.max.retries",
            ),
            key(
                "weir.value.format",
                ConfigType::String,
                Some("connect-json"),
                "Values with their Connect schema",
            ),
            key(
                "weir.key.format",
                ConfigType::String,
                Some("connect-json"),
                "Keys with their Connect schema",
            ),
        ];
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        Settings::parse(config).err().unwrap_or_default()
    }

    fn open(config: Config, _committed: Vec<LogPosition>) -> Result<Self, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let db = Connection::open(GRANT)?;
        let dialect = db.dialect();
        Ok(SqlSink {
            s,
            db,
            dialect,
            tables: HashMap::new(),
            written: BTreeMap::new(),
        })
    }

    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let immediate = if self.dialect == "sqlite" {
            weir_sdk::sql::BeginKind::Immediate
        } else {
            weir_sdk::sql::BeginKind::Default
        };
        self.db.begin(immediate)?;
        let result = (|| -> Result<(), Error> {
            let mut todo: Vec<Option<(String, Action)>> = Vec::with_capacity(batch.len());
            // With the reduction buffer: the latest action per table and key.
            let mut latest: HashMap<(String, String), usize> = HashMap::new();
            for r in batch.iter() {
                let table = self.fold(&self.s.table(r.topic()));
                let action = self
                    .action(&r)
                    .map(|a| self.folded(a))
                    .map_err(|e| weir_sdk::bad_record(r.index(), &e))?;
                if self.s.reduce {
                    match &action {
                        Action::Row { key, .. } | Action::Delete { key } if !key.is_empty() => {
                            let id = serde_json::to_string(
                                &key.iter().map(|(_, v)| v).collect::<Vec<_>>(),
                            )
                            .unwrap_or_default();
                            if let Some(i) = latest.insert((table.clone(), id), todo.len()) {
                                todo[i] = None;
                            }
                        }
                        Action::Truncate => {
                            // What the truncate empties need not be written first.
                            for slot in todo.iter_mut() {
                                if slot.as_ref().is_some_and(|(t, _)| *t == table) {
                                    *slot = None;
                                }
                            }
                            latest.retain(|(t, _), _| *t != table);
                        }
                        _ => {}
                    }
                }
                todo.push(Some((table, action)));
            }
            for (table, action) in todo.into_iter().flatten() {
                self.write(&table, action)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.db.commit()?;
                for r in batch.iter() {
                    if let (Some(p), Some(o)) = (r.partition(), r.offset()) {
                        let e = self.written.entry((r.topic().to_string(), p)).or_default();
                        *e = (*e).max(o);
                    }
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.db.rollback();
                // A table created in the rolled back transaction is gone again.
                self.tables.clear();
                Err(e)
            }
        }
    }

    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error> {
        // Every put committed its transaction: what was written is durable.
        Ok(up_to
            .into_iter()
            .filter_map(|p| {
                let w = self.written.get(&(p.topic.clone(), p.partition))?;
                Some(LogPosition {
                    offset: p.offset.min(*w),
                    ..p
                })
            })
            .collect())
    }
}

weir_sdk::export_sink!(SqlSink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_dates_read_back() {
        // 123.45 at scale 2: unscaled 12345 = 0x3039.
        assert_eq!(decimal_text(&[0x30, 0x39], 2), "123.45");
        assert_eq!(decimal_text(&[0xff], 0), "-1");
        assert_eq!(decimal_text(&[0x05], 3), "0.005");
        assert_eq!(decimal_text(&[0x80], 1), "-12.8");
        assert_eq!(base64_decode("MDk=").unwrap(), [0x30, 0x39]);
        assert_eq!(civil(19782), "2024-02-29");
        assert_eq!(civil(-1), "1969-12-31");
        assert_eq!(clock(2_250_000), "00:00:02.250000");
    }

    #[test]
    fn settings_follow_debeziums_jdbc_sink() {
        let cfg = |kv: &[(&str, &str)]| -> Config {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = Settings::parse(&cfg(&[
            ("insert.mode", "upsert"),
            ("primary.key.mode", "record_key"),
            ("delete.enabled", "true"),
        ]))
        .unwrap();
        assert_eq!(s.table("shop.public.items"), "shop_public_items");
        assert!(s.delete && s.insert == InsertMode::Upsert);
        let e = Settings::parse(&cfg(&[
            ("insert.mode", "upsert"),
            ("delete.enabled", "true"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["delete.enabled", "primary.key.mode"]);

        let s = Settings::parse(&cfg(&[
            ("collection.name.format", "copy_${topic}"),
            ("field.exclude.list", "orders:secret, orders:note"),
            ("quote.identifiers", "true"),
            ("use.reduction.buffer", "true"),
            ("batch.size", "1000"),
        ]))
        .unwrap();
        assert_eq!(s.table("shop.orders"), "copy_shop_orders");
        assert!(s.quote && s.reduce);
        assert!(!s.writes("orders", "secret") && s.writes("orders", "id"));
        assert!(s.writes("other", "secret"));
        let e = Settings::parse(&cfg(&[
            ("collection.name.format", "a"),
            ("table.name.format", "b"),
            ("field.include.list", "noseparator"),
            ("database.time_zone", "Europe/Paris"),
            ("column.naming.strategy", "com.example.Mine"),
            ("batch.size", "many"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "table.name.format",
                "field.include.list",
                "database.time_zone",
                "column.naming.strategy",
                "batch.size"
            ]
        );
    }
}
