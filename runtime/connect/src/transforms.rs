//! The transform chain: Kafka Connect's built-in single message transforms and predicates
//! (same class names and keys), and WebAssembly transforms, in the order `transforms` lists
//! them.
//!
//! Native transforms work on [`Rec`]s; a WebAssembly step gets the records as one batch in
//! the contract's layout (keys and values as bytes) and its output becomes records again.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weir_batch::{Batch, BatchBuilder, RecordData};

use crate::ConnectError;
use crate::convert::Data;
use crate::jsontext;

mod cast;
mod flatten;
mod header_from;
#[cfg(test)]
mod more_tests;
mod timefmt;
mod timestamp_converter;
mod unwrap;

/// A record between the plugin and the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp: i64,
    pub key: Data,
    pub value: Data,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub source_partition: Option<Vec<u8>>,
    pub source_offset: Option<Vec<u8>>,
    /// The index of the record this one comes from in the batch that was read (the source's
    /// poll, the records read from the log); the dead letter queue gets that record.
    pub origin: Option<u32>,
}

/// Key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Key,
    Value,
}

impl Side {
    fn of(self, r: &mut Rec) -> &mut Data {
        match self {
            Side::Key => &mut r.key,
            Side::Value => &mut r.value,
        }
    }
}

/// A predicate (`predicates.<name>.type`).
#[derive(Debug, Clone)]
enum Predicate {
    TopicNameMatches(regex::Regex),
    HasHeaderKey(String),
    RecordIsTombstone,
}

impl Predicate {
    fn test(&self, r: &Rec) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(&r.topic),
            Predicate::HasHeaderKey(k) => r.headers.iter().any(|(n, _)| n == k),
            Predicate::RecordIsTombstone => r.value.is_null(),
        }
    }
}

/// One native transform.
#[derive(Debug, Clone)]
enum Smt {
    InsertField {
        side: Side,
        topic: Option<Field>,
        partition: Option<Field>,
        offset: Option<Field>,
        timestamp: Option<Field>,
        /// The field, its value, and that value as JSON text (written once, not per record).
        static_field: Option<(Field, String, String)>,
    },
    ReplaceField {
        side: Side,
        exclude: Vec<String>,
        include: Vec<String>,
        renames: Vec<(String, String)>,
    },
    MaskField {
        side: Side,
        fields: Vec<String>,
        replacement: Option<String>,
    },
    ExtractField {
        side: Side,
        field: String,
    },
    HoistField {
        side: Side,
        field: String,
    },
    ValueToKey {
        fields: Vec<String>,
    },
    RegexRouter {
        regex: regex::Regex,
        replacement: String,
    },
    TimestampRouter {
        topic_format: String,
        timestamp_format: String,
    },
    InsertHeader {
        header: String,
        value: String,
    },
    DropHeaders {
        headers: Vec<String>,
    },
    Cast {
        side: Side,
        spec: cast::Spec,
    },
    TimestampConverter {
        side: Side,
        config: timestamp_converter::Config,
    },
    Flatten {
        side: Side,
        delimiter: String,
    },
    HeaderFrom {
        side: Side,
        config: header_from::Config,
    },
    Filter,
    /// Debezium's `ExtractNewRecordState`.
    Unwrap(unwrap::Config),
}

/// Debezium's transforms the runtime runs natively, by class name.
const DEBEZIUM_UNWRAP: &str = "io.debezium.transforms.ExtractNewRecordState";

/// `name` (optional) or `name!` (required), as InsertField writes field names.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    optional: bool,
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        Some(match s.strip_suffix('!') {
            Some(n) => Field {
                name: n.into(),
                optional: false,
            },
            None => Field {
                name: s.trim_end_matches('?').into(),
                optional: true,
            },
        })
    }
}

/// A step of the chain: what it does, and when (predicate, negated or not).
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// Its `type` as configured (Kafka's class name, or the WebAssembly plugin's name).
    pub class: String,
    kind: StepKind,
    predicate: Option<(Predicate, bool)>,
}

#[derive(Debug, Clone)]
enum StepKind {
    Native(Smt),
    /// A WebAssembly transform: the registry name and its config (with `weir.*` grants).
    Wasm {
        plugin: String,
        config: Vec<(String, String)>,
    },
}

/// A WebAssembly step as configured: (step index, plugin name, its config).
pub type WasmStepConfig = (usize, String, Vec<(String, String)>);

/// The configured chain.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub steps: Vec<Step>,
}

/// Kafka's transform class names, without the package (and `$Key`/`$Value`).
const KNOWN: &[&str] = &[
    "InsertField",
    "ReplaceField",
    "MaskField",
    "ExtractField",
    "HoistField",
    "ValueToKey",
    "RegexRouter",
    "TimestampRouter",
    "InsertHeader",
    "DropHeaders",
    "Filter",
    "Cast",
    "TimestampConverter",
    "Flatten",
    "HeaderFrom",
];

/// Native transforms and predicates, for `GET /connector-plugins?connectorsOnly=false`.
pub fn native_classes() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for k in KNOWN {
        let base = format!("org.apache.kafka.connect.transforms.{k}");
        match *k {
            "InsertField" | "ReplaceField" | "MaskField" | "ExtractField" | "HoistField"
            | "Cast" | "TimestampConverter" | "Flatten" | "HeaderFrom" => {
                out.push((format!("{base}$Key"), "transformation"));
                out.push((format!("{base}$Value"), "transformation"));
            }
            _ => out.push((base, "transformation")),
        }
    }
    out.push((DEBEZIUM_UNWRAP.to_string(), "transformation"));
    for p in ["HasHeaderKey", "RecordIsTombstone", "TopicNameMatches"] {
        out.push((
            format!("org.apache.kafka.connect.transforms.predicates.{p}"),
            "predicate",
        ));
    }
    out
}

fn list(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

impl Chain {
    /// Reads `transforms` and `predicates` from a connector config. `is_transform` says whether
    /// a type that is not a native class names a WebAssembly transform plugin.
    pub fn parse(
        raw: &BTreeMap<String, String>,
        is_transform: &dyn Fn(&str) -> Result<(), ConnectError>,
    ) -> Result<Chain, ConnectError> {
        let bad = ConnectError::BadConfig;
        let mut predicates = BTreeMap::new();
        for p in list(raw.get("predicates")) {
            let key = |k: &str| format!("predicates.{p}.{k}");
            let ty = raw
                .get(&key("type"))
                .ok_or_else(|| bad(format!("{}: missing the predicate's class", key("type"))))?;
            let short = ty.trim().rsplit('.').next().unwrap_or("");
            let pred = match short {
                "TopicNameMatches" => {
                    let pat = raw.get(&key("pattern")).ok_or_else(|| {
                        bad(format!(
                            "{}: missing required configuration",
                            key("pattern")
                        ))
                    })?;
                    Predicate::TopicNameMatches(
                        regex::Regex::new(&format!("^(?:{pat})$")).map_err(|e| {
                            bad(format!("{}: invalid pattern: {e}", key("pattern")))
                        })?,
                    )
                }
                "HasHeaderKey" => Predicate::HasHeaderKey(
                    raw.get(&key("name"))
                        .ok_or_else(|| {
                            bad(format!("{}: missing required configuration", key("name")))
                        })?
                        .clone(),
                ),
                "RecordIsTombstone" => Predicate::RecordIsTombstone,
                _ => {
                    return Err(bad(format!(
                        "{}: unknown predicate {ty:?} (supported: TopicNameMatches, HasHeaderKey, RecordIsTombstone)",
                        key("type")
                    )));
                }
            };
            predicates.insert(p.clone(), pred);
        }
        let mut steps = Vec::new();
        for t in list(raw.get("transforms")) {
            let key = |k: &str| format!("transforms.{t}.{k}");
            let ty = raw
                .get(&key("type"))
                .ok_or_else(|| bad(format!("{}: missing the transform's class", key("type"))))?
                .trim()
                .to_string();
            let predicate = match raw.get(&key("predicate")) {
                None => None,
                Some(p) => {
                    let pred = predicates.get(p.trim()).ok_or_else(|| {
                        bad(format!(
                            "{}: no predicate named {p:?} in `predicates`",
                            key("predicate")
                        ))
                    })?;
                    let negate = match raw.get(&key("negate")).map(|s| s.trim()) {
                        None | Some("false") => false,
                        Some("true") => true,
                        Some(v) => {
                            return Err(bad(format!(
                                "{}: invalid value {v:?}: expected true or false",
                                key("negate")
                            )));
                        }
                    };
                    Some((pred.clone(), negate))
                }
            };
            let (class, side) = match ty.rsplit_once('$') {
                Some((c, "Key")) => (c, Side::Key),
                Some((c, "Value")) => (c, Side::Value),
                _ => (ty.as_str(), Side::Value),
            };
            let short = class.rsplit('.').next().unwrap_or("");
            let native = class.starts_with("org.apache.kafka.connect.transforms.")
                || (KNOWN.contains(&short) && !class.contains('.'));
            let kind = if ty == DEBEZIUM_UNWRAP {
                StepKind::Native(Smt::Unwrap(unwrap::parse(&|k| raw.get(&key(k)), &key)?))
            } else if native {
                StepKind::Native(smt(short, side, &|k| raw.get(&key(k)), &key)?)
            } else {
                is_transform(&ty).map_err(|e| bad(format!("{}: {e}", key("type"))))?;
                let prefix = format!("transforms.{t}.");
                let config = raw
                    .iter()
                    .filter_map(|(k, v)| {
                        let k = k.strip_prefix(&prefix)?;
                        (!matches!(k, "type" | "predicate" | "negate"))
                            .then(|| (k.to_string(), v.clone()))
                    })
                    .collect();
                StepKind::Wasm {
                    plugin: ty.clone(),
                    config,
                }
            };
            steps.push(Step {
                name: t.clone(),
                class: ty.clone(),
                kind,
                predicate,
            });
        }
        Ok(Chain { steps })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The WebAssembly steps: (step index, plugin name, config).
    pub fn wasm_steps(&self) -> Vec<WasmStepConfig> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.kind {
                StepKind::Wasm { plugin, config } => Some((i, plugin.clone(), config.clone())),
                StepKind::Native(_) => None,
            })
            .collect()
    }

    /// Runs the chain over records. `wasm(step, records)` runs a WebAssembly step;
    /// `on_error(record, class, why)` decides about a record the native transform `class`
    /// failed on: `Ok`
    /// drops it (tolerated), `Err` fails the whole call.
    pub fn apply<E>(
        &self,
        mut recs: Vec<Rec>,
        wasm: &mut dyn FnMut(usize, Vec<Rec>) -> Result<Vec<Rec>, E>,
        on_error: &mut dyn FnMut(&Rec, &str, String) -> Result<(), E>,
    ) -> Result<Vec<Rec>, E> {
        let mut i = 0;
        while i < self.steps.len() {
            let step = &self.steps[i];
            match &step.kind {
                StepKind::Native(_) => {
                    // The run of native steps goes record by record.
                    let end = (i..self.steps.len())
                        .find(|&j| !matches!(self.steps[j].kind, StepKind::Native(_)))
                        .unwrap_or(self.steps.len());
                    let run = &self.steps[i..end];
                    let mut out = Vec::with_capacity(recs.len());
                    for mut r in recs {
                        match run_native(run, &mut r) {
                            Ok(true) => out.push(r),
                            Ok(false) => {}
                            Err((class, e)) => on_error(&r, class, e)?,
                        }
                    }
                    recs = out;
                    i = end;
                    continue;
                }
                StepKind::Wasm { .. } => {
                    if let Some((p, negate)) = &step.predicate {
                        // Only the records the predicate selects go through the plugin; the
                        // others keep their place.
                        let (mut sel, mut idx, mut all) = (Vec::new(), Vec::new(), Vec::new());
                        for r in recs {
                            if p.test(&r) != *negate {
                                idx.push(all.len());
                                sel.push(r.clone());
                            }
                            all.push(Some(r));
                        }
                        let done = wasm(i, sel)?;
                        if done.len() != idx.len() {
                            // The plugin dropped or added records: keep its output, then the
                            // records it did not see, in order.
                            let mut out = done;
                            for (j, r) in all.into_iter().enumerate() {
                                if !idx.contains(&j) {
                                    out.extend(r);
                                }
                            }
                            recs = out;
                        } else {
                            for (j, r) in idx.into_iter().zip(done) {
                                all[j] = Some(r);
                            }
                            recs = all.into_iter().flatten().collect();
                        }
                    } else {
                        recs = wasm(i, recs)?;
                    }
                    i += 1;
                }
            }
        }
        Ok(recs)
    }
}

fn smt<'a>(
    short: &str,
    side: Side,
    get: &dyn Fn(&str) -> Option<&'a String>,
    key: &dyn Fn(&str) -> String,
) -> Result<Smt, ConnectError> {
    let bad = ConnectError::BadConfig;
    let required = |k: &str| -> Result<String, ConnectError> {
        get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{}: missing required configuration", key(k))))
    };
    Ok(match short {
        "InsertField" => {
            let static_field = match (
                get("static.field").and_then(|s| Field::parse(s)),
                get("static.value"),
            ) {
                (Some(f), Some(v)) => Some((f, v.clone(), json_string(v))),
                (Some(_), None) => {
                    return Err(bad(format!(
                        "{}: missing required configuration",
                        key("static.value")
                    )));
                }
                _ => None,
            };
            Smt::InsertField {
                side,
                topic: get("topic.field").and_then(|s| Field::parse(s)),
                partition: get("partition.field").and_then(|s| Field::parse(s)),
                offset: get("offset.field").and_then(|s| Field::parse(s)),
                timestamp: get("timestamp.field").and_then(|s| Field::parse(s)),
                static_field,
            }
        }
        "ReplaceField" => {
            let mut renames = Vec::new();
            for r in list(get("renames")) {
                let (a, b) = r
                    .split_once(':')
                    .ok_or_else(|| bad(format!("{}: {r:?} is not old:new", key("renames"))))?;
                renames.push((a.trim().to_string(), b.trim().to_string()));
            }
            let mut exclude = list(get("exclude"));
            exclude.extend(list(get("blacklist")));
            let mut include = list(get("include"));
            include.extend(list(get("whitelist")));
            Smt::ReplaceField {
                side,
                exclude,
                include,
                renames,
            }
        }
        "MaskField" => Smt::MaskField {
            side,
            fields: {
                let f = list(get("fields"));
                if f.is_empty() {
                    return Err(bad(format!(
                        "{}: missing required configuration",
                        key("fields")
                    )));
                }
                f
            },
            replacement: get("replacement").cloned(),
        },
        "ExtractField" => Smt::ExtractField {
            side,
            field: required("field")?,
        },
        "HoistField" => Smt::HoistField {
            side,
            field: required("field")?,
        },
        "ValueToKey" => Smt::ValueToKey {
            fields: {
                let f = list(get("fields"));
                if f.is_empty() {
                    return Err(bad(format!(
                        "{}: missing required configuration",
                        key("fields")
                    )));
                }
                f
            },
        },
        "RegexRouter" => {
            let r = required("regex")?;
            Smt::RegexRouter {
                regex: regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| bad(format!("{}: invalid regex: {e}", key("regex"))))?,
                // Java's `$1` group references; Rust's regex wants `${1}`.
                replacement: java_replacement(&required("replacement")?),
            }
        }
        "TimestampRouter" => Smt::TimestampRouter {
            topic_format: get("topic.format")
                .cloned()
                .unwrap_or_else(|| "${topic}-${timestamp}".into()),
            timestamp_format: get("timestamp.format")
                .cloned()
                .unwrap_or_else(|| "yyyyMMdd".into()),
        },
        "InsertHeader" => Smt::InsertHeader {
            header: required("header")?,
            value: get("value.literal").cloned().ok_or_else(|| {
                bad(format!(
                    "{}: missing required configuration",
                    key("value.literal")
                ))
            })?,
        },
        "DropHeaders" => Smt::DropHeaders {
            headers: list(get("headers")),
        },
        "Filter" => Smt::Filter,
        "Cast" => Smt::Cast {
            side,
            spec: cast::parse(get("spec"), key)?,
        },
        "TimestampConverter" => Smt::TimestampConverter {
            side,
            config: timestamp_converter::parse(get, key)?,
        },
        "Flatten" => Smt::Flatten {
            side,
            delimiter: get("delimiter").cloned().unwrap_or_else(|| ".".into()),
        },
        "HeaderFrom" => Smt::HeaderFrom {
            side,
            config: header_from::parse(get, key)?,
        },
        other => {
            return Err(bad(format!(
                "{}: unknown transform {other:?} (supported: {})",
                key("type"),
                KNOWN.join(", ")
            )));
        }
    })
}

/// `$1` → `${1}` (Java's group references in Rust's syntax).
fn java_replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            out.push_str(&format!("${{{n}}}"));
        } else if c == '\\' {
            if let Some(n) = chars.next() {
                if n == '$' {
                    out.push_str("$$");
                } else {
                    out.push(n);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The struct's fields in a Connect schema, if it is one.
fn schema_fields(schema: &mut Option<Value>) -> Option<&mut Vec<Value>> {
    schema.as_mut()?.get_mut("fields")?.as_array_mut()
}

fn field_schema(name: &str, ty: &str, optional: bool) -> Value {
    json!({"type": ty, "optional": optional, "field": name})
}

/// Applies one transform; `false` drops the record.
fn apply_smt(smt: &Smt, r: &mut Rec) -> Result<bool, String> {
    match smt {
        Smt::InsertField {
            side,
            topic,
            partition,
            offset,
            timestamp,
            static_field,
        } => {
            if side.of(r).is_null() {
                return Ok(true); // Kafka passes tombstones through.
            }
            if let Some(done) = edit_text_of(smt, *side, r) {
                return done.map(|()| true);
            }
            let (topic_v, part_v, off_v, ts_v) =
                (r.topic.clone(), r.partition, r.offset, r.timestamp);
            let data = side.of(r);
            let (schema, value) = data.structured("InsertField")?;
            let obj = value
                .as_object_mut()
                .ok_or("InsertField works on a struct or map value only")?;
            let mut add = |f: &Field, v: Value, ty: &str, schema: &mut Option<Value>| {
                obj.insert(f.name.clone(), v);
                if let Some(fields) = schema_fields(schema) {
                    fields.retain(|x| x.get("field").and_then(Value::as_str) != Some(&f.name));
                    let mut fs = field_schema(&f.name, ty, f.optional);
                    if ty == "timestamp" {
                        fs = json!({"type": "int64", "name": "org.apache.kafka.connect.data.Timestamp",
                                    "version": 1, "optional": f.optional, "field": f.name});
                    }
                    fields.push(fs);
                }
            };
            if let Some(f) = topic {
                add(f, Value::String(topic_v), "string", schema);
            }
            if let Some(f) = partition {
                add(f, part_v.map_or(Value::Null, Value::from), "int32", schema);
            }
            if let Some(f) = offset {
                add(f, off_v.map_or(Value::Null, Value::from), "int64", schema);
            }
            if let Some(f) = timestamp {
                add(f, Value::from(ts_v), "timestamp", schema);
            }
            if let Some((f, v, _)) = static_field {
                add(f, Value::String(v.clone()), "string", schema);
            }
            Ok(true)
        }
        Smt::ReplaceField {
            side,
            exclude,
            include,
            renames,
        } => {
            if side.of(r).is_null() {
                return Ok(true);
            }
            if let Some(done) = edit_text_of(smt, *side, r) {
                return done.map(|()| true);
            }
            let keep = |k: &str| {
                !exclude.iter().any(|e| e == k)
                    && (include.is_empty() || include.iter().any(|i| i == k))
            };
            let rename = |k: &str| {
                renames
                    .iter()
                    .find(|(a, _)| a == k)
                    .map_or(k.to_string(), |(_, b)| b.clone())
            };
            let data = side.of(r);
            let (schema, value) = data.structured("ReplaceField")?;
            let obj = value
                .as_object_mut()
                .ok_or("ReplaceField works on a struct or map value only")?;
            let old = std::mem::take(obj);
            for (k, v) in old {
                if keep(&k) {
                    obj.insert(rename(&k), v);
                }
            }
            if let Some(fields) = schema_fields(schema) {
                fields.retain(|f| f.get("field").and_then(Value::as_str).is_some_and(keep));
                for f in fields.iter_mut() {
                    if let Some(n) = f.get("field").and_then(Value::as_str).map(str::to_string) {
                        f["field"] = Value::String(rename(&n));
                    }
                }
            }
            Ok(true)
        }
        Smt::MaskField {
            side,
            fields,
            replacement,
        } => {
            if side.of(r).is_null() {
                return Ok(true);
            }
            if let Some(done) = edit_text_of(smt, *side, r) {
                return done.map(|()| true);
            }
            let data = side.of(r);
            let (_, value) = data.structured("MaskField")?;
            let obj = value
                .as_object_mut()
                .ok_or("MaskField works on a struct or map value only")?;
            for f in fields {
                if let Some(v) = obj.get_mut(f) {
                    *v = mask(v, replacement.as_deref())?;
                }
            }
            Ok(true)
        }
        Smt::ExtractField { side, field } => {
            let data = side.of(r);
            if data.is_null() {
                return Ok(true);
            }
            let (schema, value) = data.structured("ExtractField")?;
            let obj = value
                .as_object_mut()
                .ok_or("ExtractField works on a struct or map value only")?;
            let v = obj.remove(field).unwrap_or(Value::Null);
            let s = schema_fields(schema).and_then(|fs| {
                fs.iter()
                    .find(|f| f.get("field").and_then(Value::as_str) == Some(field))
                    .cloned()
                    .map(|mut f| {
                        if let Some(o) = f.as_object_mut() {
                            o.remove("field");
                        }
                        f
                    })
            });
            *data = Data::Json {
                schema: s,
                value: v,
            };
            Ok(true)
        }
        Smt::HoistField { side, field } => {
            let data = side.of(r);
            let d = std::mem::replace(data, Data::Raw(None));
            let (schema, value) = match d {
                Data::Raw(None) => (None, Value::Null),
                Data::Raw(Some(b)) => match String::from_utf8(b) {
                    Ok(s) => (None, Value::String(s)),
                    Err(e) => (None, Value::String(crate::convert::base64(e.as_bytes()))),
                },
                Data::Json { schema, value } => (schema, value),
                Data::JsonText(b) => (
                    None,
                    serde_json::from_slice(&b).map_err(|e| format!("HoistField: {e}"))?,
                ),
            };
            let mut m = Map::new();
            m.insert(field.clone(), value);
            let schema = schema.map(|s| {
                let mut f = s;
                if let Some(o) = f.as_object_mut() {
                    o.insert("field".into(), Value::String(field.clone()));
                }
                json!({"type": "struct", "fields": [f], "optional": false})
            });
            *data = Data::Json {
                schema,
                value: Value::Object(m),
            };
            Ok(true)
        }
        Smt::ValueToKey { fields } => {
            if r.value.is_null() {
                return Ok(true);
            }
            let (schema, value) = r.value.structured("ValueToKey")?;
            let obj = value
                .as_object()
                .ok_or("ValueToKey works on a struct or map value only")?;
            let mut key = Map::new();
            for f in fields {
                let v = obj
                    .get(f)
                    .ok_or_else(|| format!("ValueToKey: the value has no field {f:?}"))?;
                key.insert(f.clone(), v.clone());
            }
            let key_schema = schema_fields(schema).map(|fs| {
                let picked: Vec<Value> = fields
                    .iter()
                    .filter_map(|f| {
                        fs.iter()
                            .find(|x| x.get("field").and_then(Value::as_str) == Some(f))
                            .cloned()
                    })
                    .collect();
                json!({"type": "struct", "fields": picked, "optional": false})
            });
            r.key = Data::Json {
                schema: key_schema,
                value: Value::Object(key),
            };
            Ok(true)
        }
        Smt::RegexRouter { regex, replacement } => {
            if regex.is_match(&r.topic) {
                r.topic = regex.replace(&r.topic, replacement.as_str()).into_owned();
                r.partition = None;
            }
            Ok(true)
        }
        Smt::TimestampRouter {
            topic_format,
            timestamp_format,
        } => {
            let ts = format_timestamp(r.timestamp, timestamp_format);
            r.topic = topic_format
                .replace("${topic}", &r.topic)
                .replace("${timestamp}", &ts);
            r.partition = None;
            Ok(true)
        }
        Smt::InsertHeader { header, value } => {
            r.headers
                .push((header.clone(), Some(value.clone().into_bytes())));
            Ok(true)
        }
        Smt::DropHeaders { headers } => {
            r.headers.retain(|(n, _)| !headers.contains(n));
            Ok(true)
        }
        Smt::Filter => Ok(false),
        Smt::Unwrap(config) => unwrap::apply(config, r),
        Smt::Cast { side, spec } => {
            let data = side.of(r);
            if !data.is_null() {
                cast::apply(spec, data)?;
            }
            Ok(true)
        }
        Smt::TimestampConverter { side, config } => {
            let data = side.of(r);
            if !data.is_null() {
                timestamp_converter::apply(config, data)?;
            }
            Ok(true)
        }
        Smt::Flatten { side, delimiter } => {
            let data = side.of(r);
            if !data.is_null() {
                flatten::apply(delimiter, data)?;
            }
            Ok(true)
        }
        Smt::HeaderFrom { side, config } => {
            let data = match side {
                Side::Key => &mut r.key,
                Side::Value => &mut r.value,
            };
            if !data.is_null() {
                header_from::apply(config, data, &mut r.headers)?;
            }
            Ok(true)
        }
    }
}

/// A member list of a JSON text object.
type Members<'a> = Vec<jsontext::Member<'a>>;

/// The side a transform can edit as JSON text (InsertField, ReplaceField, MaskField).
fn text_side(smt: &Smt) -> Option<Side> {
    match smt {
        Smt::InsertField { side, .. }
        | Smt::ReplaceField { side, .. }
        | Smt::MaskField { side, .. } => Some(*side),
        _ => None,
    }
}

/// What the record-level fields InsertField can add are.
struct Meta<'r> {
    topic: &'r str,
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: i64,
}

/// A text-editable transform ([`text_side`]) on the members of a JSON text object.
fn text_edit(smt: &Smt, m: &mut Members<'_>, meta: &Meta<'_>) -> Result<(), String> {
    match smt {
        Smt::InsertField {
            topic,
            partition,
            offset,
            timestamp,
            static_field,
            ..
        } => {
            let mut put = |f: &Field, v: String| {
                m.retain(|x| x.name != f.name);
                m.push(jsontext::Member::new(f.name.clone(), v.into_bytes()));
            };
            let num = |n: Option<i64>| n.map_or("null".to_string(), |n| n.to_string());
            if let Some(f) = topic {
                put(f, json_string(meta.topic));
            }
            if let Some(f) = partition {
                put(f, num(meta.partition.map(i64::from)));
            }
            if let Some(f) = offset {
                put(f, num(meta.offset));
            }
            if let Some(f) = timestamp {
                put(f, meta.timestamp.to_string());
            }
            if let Some((f, _, text)) = static_field {
                put(f, text.clone());
            }
        }
        Smt::ReplaceField {
            exclude,
            include,
            renames,
            ..
        } => {
            m.retain(|x| {
                !exclude.iter().any(|e| *e == x.name)
                    && (include.is_empty() || include.iter().any(|i| *i == x.name))
            });
            for x in m.iter_mut() {
                if let Some((_, b)) = renames.iter().find(|(a, _)| *a == x.name) {
                    x.rename(b);
                }
            }
            // A name given twice (a rename onto a kept field): one member, as a map holds it.
            if !renames.is_empty() {
                dedup_members(m);
            }
        }
        Smt::MaskField {
            fields,
            replacement,
            ..
        } => {
            for x in m.iter_mut() {
                if fields.iter().any(|f| *f == x.name) {
                    x.value = mask_text(&x.value, replacement.as_deref())?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Keeps one member per name. Where a rename lands on a name the object already has, the
/// member that had the name keeps it; of two members read with the same name, the later one
/// (as serde_json keeps it).
fn dedup_members(m: &mut Members<'_>) {
    let mut i = 0;
    while i < m.len() {
        if let Some(j) = (i + 1..m.len()).find(|&j| m[j].name == m[i].name) {
            // `m[i]` and `m[j]` share a name: the renamed one (raw: None) gives way.
            let drop = if m[j].raw.is_none() && m[i].raw.is_some() {
                j
            } else {
                i
            };
            m.remove(drop);
        } else {
            i += 1;
        }
    }
}

/// `smt` on the record's `side` as JSON text; `None` when that is not a JSON text object.
fn edit_text_of(smt: &Smt, side: Side, r: &mut Rec) -> Option<Result<(), String>> {
    let (meta, data) = split(r, side);
    edit_text(data, |m| text_edit(smt, m, &meta))
}

/// The record's fields InsertField reads, and its key or value to edit.
fn split(r: &mut Rec, side: Side) -> (Meta<'_>, &mut Data) {
    let Rec {
        topic,
        partition,
        offset,
        timestamp,
        key,
        value,
        ..
    } = r;
    let meta = Meta {
        topic,
        partition: *partition,
        offset: *offset,
        timestamp: *timestamp,
    };
    (meta, if side == Side::Key { key } else { value })
}

/// Runs a run of native steps on one record; `false` drops it; the error names the step.
/// Consecutive text edits of the same side of a JSON text object (InsertField, ReplaceField,
/// MaskField) share one reading of its members and one writing.
fn run_native<'s>(steps: &'s [Step], r: &mut Rec) -> Result<bool, (&'s str, String)> {
    let applies = |step: &Step, r: &Rec| {
        step.predicate
            .as_ref()
            .is_none_or(|(p, negate)| p.test(r) != *negate)
    };
    fn smt_of(step: &Step) -> Option<&Smt> {
        match &step.kind {
            StepKind::Native(smt) => Some(smt),
            StepKind::Wasm { .. } => None,
        }
    }
    let failed = |step: &'s Step, e: String| {
        (
            step.class.as_str(),
            format!("transform {} failed: {e}", step.name),
        )
    };
    let mut k = 0;
    while k < steps.len() {
        let step = &steps[k];
        let Some(smt) = smt_of(step) else {
            return Err(failed(step, "it is not native".into()));
        };
        if !applies(step, r) {
            k += 1;
            continue;
        }
        if let Some(side) = text_side(smt)
            && matches!(side.of(r), Data::JsonText(_))
        {
            // The run of text edits of this side; text edits change neither the topic, the
            // headers nor whether a value is null, so every predicate can be read now.
            let mut end = k + 1;
            while end < steps.len() && smt_of(&steps[end]).and_then(text_side) == Some(side) {
                end += 1;
            }
            let run: Vec<(&Step, &Smt)> = steps[k..end]
                .iter()
                .filter(|s| applies(s, r))
                .filter_map(|s| Some((s, smt_of(s)?)))
                .collect();
            let (meta, data) = split(r, side);
            let mut failing = step;
            let done = edit_text(data, |m| {
                for (s, smt) in &run {
                    failing = s;
                    text_edit(smt, m, &meta)?;
                }
                Ok(())
            });
            if let Some(done) = done {
                done.map_err(|e| failed(failing, e))?;
                k = end;
                continue;
            }
        }
        match apply_smt(smt, r) {
            Ok(true) => k += 1,
            Ok(false) => return Ok(false),
            Err(e) => return Err(failed(step, e)),
        }
    }
    Ok(true)
}

/// Runs `edit` on the members of a [`Data::JsonText`] object and writes the result back;
/// `None` when the data is anything else (the caller takes the structured path).
fn edit_text(
    data: &mut Data,
    edit: impl FnOnce(&mut Members<'_>) -> Result<(), String>,
) -> Option<Result<(), String>> {
    let Data::JsonText(doc) = data else {
        return None;
    };
    let mut m: Members<'_> = jsontext::members(doc)?;
    if let Err(e) = edit(&mut m) {
        return Some(Err(e));
    }
    let mut out = Vec::with_capacity(doc.len() + 64);
    jsontext::write_object(&mut out, &m);
    *data = Data::JsonText(out);
    Some(Ok(()))
}

fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    jsontext::write_string(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// [`mask`] on a value's JSON text: the same result, without parsing strings and containers.
fn mask_text(v: &[u8], replacement: Option<&str>) -> Result<Cow<'static, [u8]>, String> {
    Ok(match (v.first(), replacement) {
        (Some(b'"'), None) => Cow::Borrowed(b"\"\""),
        (Some(b'"'), Some(r)) => Cow::Owned(json_string(r).into_bytes()),
        (Some(b't' | b'f'), _) => Cow::Borrowed(b"false"),
        (Some(b'['), _) => Cow::Borrowed(b"[]"),
        (Some(b'{'), _) => Cow::Borrowed(b"{}"),
        (Some(b'n'), _) => Cow::Borrowed(b"null"),
        // A number: `replacement` parsed as one, or 0 for an integer (what serde_json holds as
        // i64 or u64) and 0.0 for anything else (a fraction, an exponent, a huge integer).
        (_, Some(r)) => Cow::Owned(mask(&json!(0), Some(r))?.to_string().into_bytes()),
        (_, None) => {
            let t = std::str::from_utf8(v).unwrap_or("");
            // serde_json holds `-0` as a float.
            let int = !t.contains(['.', 'e', 'E'])
                && t != "-0"
                && (t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok());
            Cow::Borrowed(if int { b"0" } else { b"0.0" })
        }
    })
}

/// MaskField's replacement: the type's empty value, or `replacement` (numbers and strings).
fn mask(v: &Value, replacement: Option<&str>) -> Result<Value, String> {
    Ok(match (v, replacement) {
        (Value::String(_), Some(r)) => Value::String(r.to_string()),
        (Value::Number(_), Some(r)) => {
            let n: serde_json::Number = r
                .parse::<i64>()
                .map(Into::into)
                .or_else(|_| {
                    r.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .ok_or(())
                })
                .map_err(|_| format!("MaskField: replacement {r:?} is not a number"))?;
            Value::Number(n)
        }
        (Value::String(_), None) => Value::String(String::new()),
        (Value::Number(n), None) if n.is_f64() => json!(0.0),
        (Value::Number(_), None) => json!(0),
        (Value::Bool(_), _) => Value::Bool(false),
        (Value::Array(_), _) => json!([]),
        (Value::Object(_), _) => json!({}),
        (Value::Null, _) => Value::Null,
    })
}

/// A Java `SimpleDateFormat` pattern's common letters (`y M d H h k K m s S E a X Z z`,
/// quoted text) for a UTC time; other letters are copied as they are.
pub fn format_timestamp(ms: i64, pattern: &str) -> String {
    timefmt::Pattern::lenient(pattern).format(ms)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Records as one batch in the contract's layout: keys and values as bytes, or, where `json`
/// says so (`.0` keys, `.1` values), as JSON text.
pub fn to_batch(recs: &[Rec], json: (bool, bool)) -> Result<Vec<u8>, String> {
    let mut b = BatchBuilder::with_capacity(recs.len(), recs.len() * 128);
    fn bytes(d: &Data, json: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
        if json { d.json_bytes() } else { d.to_bytes() }
    }
    for r in recs {
        let key = bytes(&r.key, json.0);
        let value = bytes(&r.value, json.1);
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        b.push(&RecordData {
            timestamp: r.timestamp,
            key: key.as_deref(),
            value: value.as_deref(),
            headers: &headers,
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            source_partition: r.source_partition.as_deref(),
            source_offset: r.source_offset.as_deref(),
        });
    }
    b.finish().map_err(|e| e.to_string())
}

/// A batch's records as [`Rec`]s (raw keys and values).
pub fn from_batch(batch: &Batch<'_>) -> Vec<Rec> {
    batch
        .iter()
        .map(|r| Rec {
            topic: r.topic().to_string(),
            partition: r.partition(),
            offset: r.offset(),
            timestamp: r.timestamp(),
            key: Data::Raw(r.key().map(<[u8]>::to_vec)),
            value: Data::Raw(r.value().map(<[u8]>::to_vec)),
            headers: r
                .headers()
                .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            source_partition: r.source_partition().map(<[u8]>::to_vec),
            source_offset: r.source_offset().map(<[u8]>::to_vec),
            origin: Some(r.index() as u32),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rec(value: Value) -> Rec {
        Rec {
            topic: "orders".into(),
            partition: Some(2),
            offset: Some(7),
            timestamp: 1_700_000_000_000,
            key: Data::Raw(None),
            value: Data::Json {
                schema: None,
                value,
            },
            headers: vec![("h".into(), Some(b"1".to_vec()))],
            source_partition: None,
            source_offset: None,
            origin: None,
        }
    }

    fn no_wasm(_: &str) -> Result<(), ConnectError> {
        Err(ConnectError::BadConfig("not a transform plugin".into()))
    }

    fn run(c: &[(&str, &str)], recs: Vec<Rec>) -> Vec<Rec> {
        let chain = Chain::parse(&cfg(c), &no_wasm).unwrap();
        chain
            .apply(
                recs,
                &mut |_, _| panic!("no wasm step"),
                &mut |_, _, e: String| Err(e),
            )
            .unwrap()
    }

    #[test]
    fn json_text_edits_match_the_parsed_path() {
        let c = [
            ("transforms", "ins,mask,drop,keep,ins2,route"),
            (
                "transforms.ins.type",
                "org.apache.kafka.connect.transforms.InsertField$Value",
            ),
            ("transforms.ins.static.field", "via"),
            ("transforms.ins.static.value", "we\"ir"),
            ("transforms.ins.topic.field", "t"),
            ("transforms.ins.offset.field", "o"),
            ("transforms.ins.partition.field", "p"),
            ("transforms.ins.timestamp.field", "ts"),
            (
                "transforms.mask.type",
                "org.apache.kafka.connect.transforms.MaskField$Value",
            ),
            ("transforms.mask.fields", "pad,n,f,b,arr,obj,nil,big"),
            (
                "transforms.drop.type",
                "org.apache.kafka.connect.transforms.ReplaceField$Value",
            ),
            ("transforms.drop.exclude", "gone"),
            ("transforms.drop.renames", "id:ident,a\nb:ab"),
            // Not applied: the predicate is negated on a topic that matches.
            (
                "transforms.keep.type",
                "org.apache.kafka.connect.transforms.ReplaceField$Value",
            ),
            ("transforms.keep.include", "nothing"),
            ("transforms.keep.predicate", "isOrders"),
            ("transforms.keep.negate", "true"),
            (
                "transforms.ins2.type",
                "org.apache.kafka.connect.transforms.InsertField$Value",
            ),
            ("transforms.ins2.static.field", "ident"),
            ("transforms.ins2.static.value", "over"),
            (
                "transforms.route.type",
                "org.apache.kafka.connect.transforms.RegexRouter",
            ),
            ("transforms.route.regex", "orders"),
            ("transforms.route.replacement", "routed"),
            ("predicates", "isOrders"),
            (
                "predicates.isOrders.type",
                "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            ),
            ("predicates.isOrders.pattern", "orders"),
        ];
        let doc = r#"{"id": 7, "pad": "xx\"x", "gone": [1, {"a": "}"}], "n": 12, "f": 1.5,
            "b": true, "arr": [1], "obj": {"k": 1}, "nil": null, "big": 1e400, "a\nb": 1}"#;
        let mut text = rec(Value::Null);
        text.value = Data::JsonText(doc.as_bytes().to_vec());
        // serde_json cannot hold 1e400 (the text path masks it without reading it).
        let parsed = rec(serde_json::from_str(&doc.replace("1e400", "1e300")).unwrap());
        let (t, p) = (
            run(&c, vec![text]).remove(0),
            run(&c, vec![parsed]).remove(0),
        );
        assert!(matches!(t.value, Data::JsonText(_)), "{:?}", t.value);
        assert_eq!(t.topic, "routed");
        let tv: Value = serde_json::from_slice(&t.value.to_bytes().unwrap()).unwrap();
        let pv: Value = serde_json::from_slice(&p.value.to_bytes().unwrap()).unwrap();
        assert_eq!(tv, pv);
        assert_eq!(tv["via"], "we\"ir");
        assert_eq!(tv["pad"], "");
        assert_eq!(tv["ident"], "over");
        assert_eq!(tv["f"], 0.0);
        assert_eq!(tv["big"], 0.0);
        // Member order is kept; added fields go last.
        let text = String::from_utf8(t.value.to_bytes().unwrap().into_owned()).unwrap();
        assert!(text.starts_with(r#"{"pad":"","n":0,"#), "{text}");
        assert!(text.ends_with(r#""ident":"over"}"#), "{text}");
        // A text edit that fails names its step; the record is handed to on_error.
        let bad = [
            ("transforms", "ins,mask"),
            (
                "transforms.ins.type",
                "org.apache.kafka.connect.transforms.InsertField$Value",
            ),
            ("transforms.ins.static.field", "via"),
            ("transforms.ins.static.value", "x"),
            (
                "transforms.mask.type",
                "org.apache.kafka.connect.transforms.MaskField$Value",
            ),
            ("transforms.mask.fields", "n"),
            ("transforms.mask.replacement", "not a number"),
        ];
        let chain = Chain::parse(&cfg(&bad), &no_wasm).unwrap();
        let mut r = rec(Value::Null);
        r.value = Data::JsonText(br#"{"n": 1}"#.to_vec());
        let err = chain
            .apply(
                vec![r],
                &mut |_, _| panic!("no wasm step"),
                &mut |_, _, e: String| Err(e),
            )
            .unwrap_err();
        assert!(err.starts_with("transform mask failed: MaskField"), "{err}");
    }

    #[test]
    fn a_rename_onto_a_kept_field_and_negative_zero() {
        let c = [
            ("transforms", "rn,mask"),
            (
                "transforms.rn.type",
                "org.apache.kafka.connect.transforms.ReplaceField$Value",
            ),
            ("transforms.rn.renames", "a:b"),
            (
                "transforms.mask.type",
                "org.apache.kafka.connect.transforms.MaskField$Value",
            ),
            ("transforms.mask.fields", "z"),
        ];
        let mut r = rec(Value::Null);
        r.value = Data::JsonText(br#"{"b":2,"a":1,"z":-0}"#.to_vec());
        let out = run(&c, vec![r]).remove(0);
        assert_eq!(
            out.value.to_bytes().unwrap().as_ref(),
            br#"{"b":2,"z":0.0}"#
        );
        assert_eq!(mask_text(b"-0", None).unwrap().as_ref(), b"0.0");
        assert_eq!(
            mask(&serde_json::from_str("-0").unwrap(), None).unwrap(),
            json!(0.0)
        );
    }

    #[test]
    fn kafkas_transforms_on_schemaless_values() {
        let out = run(
            &[
                ("transforms", "ins,mask,rename,route,hdr"),
                (
                    "transforms.ins.type",
                    "org.apache.kafka.connect.transforms.InsertField$Value",
                ),
                ("transforms.ins.topic.field", "t"),
                ("transforms.ins.offset.field", "o!"),
                ("transforms.ins.static.field", "src"),
                ("transforms.ins.static.value", "weir"),
                (
                    "transforms.mask.type",
                    "org.apache.kafka.connect.transforms.MaskField$Value",
                ),
                ("transforms.mask.fields", "card,n"),
                (
                    "transforms.rename.type",
                    "org.apache.kafka.connect.transforms.ReplaceField$Value",
                ),
                ("transforms.rename.renames", "name:full_name"),
                ("transforms.rename.exclude", "drop"),
                (
                    "transforms.route.type",
                    "org.apache.kafka.connect.transforms.RegexRouter",
                ),
                ("transforms.route.regex", "(.*)rders"),
                ("transforms.route.replacement", "$1-routed"),
                (
                    "transforms.hdr.type",
                    "org.apache.kafka.connect.transforms.InsertHeader",
                ),
                ("transforms.hdr.header", "via"),
                ("transforms.hdr.value.literal", "weir"),
            ],
            vec![rec(
                json!({"name": "a", "card": "1234", "n": 5, "drop": true}),
            )],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "o-routed");
        assert_eq!(
            out[0].value,
            Data::Json {
                schema: None,
                value: json!({"full_name": "a", "card": "", "n": 0, "t": "orders", "o": 7, "src": "weir"})
            }
        );
        assert_eq!(
            out[0].headers.last().unwrap(),
            &("via".to_string(), Some(b"weir".to_vec()))
        );
    }

    #[test]
    fn filter_with_predicates_and_negate() {
        let c = [
            ("transforms", "drop"),
            (
                "transforms.drop.type",
                "org.apache.kafka.connect.transforms.Filter",
            ),
            ("transforms.drop.predicate", "isOrders"),
            ("transforms.drop.negate", "true"),
            ("predicates", "isOrders"),
            (
                "predicates.isOrders.type",
                "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            ),
            ("predicates.isOrders.pattern", "ord.*"),
        ];
        let mut other = rec(json!({}));
        other.topic = "users".into();
        let out = run(&c, vec![rec(json!({"a": 1})), other]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "orders");
        let tomb = [
            ("transforms", "t"),
            ("transforms.t.type", "Filter"),
            ("transforms.t.predicate", "tomb"),
            ("predicates", "tomb"),
            (
                "predicates.tomb.type",
                "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
            ),
        ];
        let mut dead = rec(Value::Null);
        dead.value = Data::Raw(None);
        assert_eq!(run(&tomb, vec![dead, rec(json!(1))]).len(), 1);
    }

    #[test]
    fn schemas_follow_the_value() {
        let schema = json!({"type": "struct", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "secret", "type": "string", "optional": true}]});
        let mut r = rec(json!({"id": 1, "secret": "x"}));
        r.value = Data::Json {
            schema: Some(schema),
            value: json!({"id": 1, "secret": "x"}),
        };
        let out = run(
            &[
                ("transforms", "drop,ins,key"),
                (
                    "transforms.drop.type",
                    "org.apache.kafka.connect.transforms.ReplaceField$Value",
                ),
                ("transforms.drop.exclude", "secret"),
                (
                    "transforms.ins.type",
                    "org.apache.kafka.connect.transforms.InsertField$Value",
                ),
                ("transforms.ins.timestamp.field", "ts"),
                (
                    "transforms.key.type",
                    "org.apache.kafka.connect.transforms.ValueToKey",
                ),
                ("transforms.key.fields", "id"),
            ],
            vec![r],
        );
        let Data::Json {
            schema: Some(s),
            value,
        } = &out[0].value
        else {
            panic!("{:?}", out[0].value)
        };
        assert_eq!(value, &json!({"id": 1, "ts": 1_700_000_000_000i64}));
        let names: Vec<&str> = s["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "ts"]);
        assert_eq!(
            s["fields"][1]["name"],
            "org.apache.kafka.connect.data.Timestamp"
        );
        let Data::Json {
            schema: Some(ks),
            value: kv,
        } = &out[0].key
        else {
            panic!()
        };
        assert_eq!(kv, &json!({"id": 1}));
        assert_eq!(ks["fields"][0]["type"], "int64");
    }

    #[test]
    fn errors_name_the_key() {
        let e = |c: &[(&str, &str)]| Chain::parse(&cfg(c), &no_wasm).unwrap_err().to_string();
        assert!(e(&[("transforms", "a")]).contains("transforms.a.type"));
        assert!(
            e(&[
                ("transforms", "a"),
                (
                    "transforms.a.type",
                    "org.apache.kafka.connect.transforms.Nope"
                )
            ])
            .contains("Nope")
        );
        assert!(
            e(&[
                ("transforms", "a"),
                (
                    "transforms.a.type",
                    "org.apache.kafka.connect.transforms.MaskField$Value"
                )
            ])
            .contains("transforms.a.fields")
        );
        assert!(
            e(&[
                ("transforms", "a"),
                ("transforms.a.type", "Filter"),
                ("transforms.a.predicate", "p")
            ])
            .contains("transforms.a.predicate")
        );
        assert!(
            e(&[("transforms", "a"), ("transforms.a.type", "my-plugin")])
                .contains("not a transform plugin")
        );
    }

    #[test]
    fn timestamps_format_like_java() {
        // 2023-11-14T22:13:20Z
        assert_eq!(format_timestamp(1_700_000_000_000, "yyyyMMdd"), "20231114");
        assert_eq!(
            format_timestamp(1_700_000_000_000, "yyyy-MM-dd'T'HH:mm:ss"),
            "2023-11-14T22:13:20"
        );
        assert_eq!(format_timestamp(0, "yy/M/d"), "70/1/1");
        assert_eq!(java_replacement("$1-x\\$"), "${1}-x$$");
    }
}
