//! What stands between a plugin and the log: converters and the transform chain. A task
//! builds its [`Pipeline`] (instantiating its WebAssembly transforms) from the connector's
//! [`Pipe`]. When nothing needs structure, the task's loops skip all of it and bytes pass
//! through untouched.

use std::borrow::Cow;
use std::sync::Arc;

use weir_batch::Batch;
use weir_host::{Host, Output, Plugin, TaskConfig, TransformTask};

use crate::convert::{Converter, Data, Format};
use crate::errors::{DeadRecord, Failure, Reporter, Stage, bad_record};
use crate::transforms::{Chain, Rec, from_batch, to_batch};

/// A WebAssembly step of the chain, ready to instantiate.
#[derive(Debug, Clone)]
pub(crate) struct WasmStep {
    pub index: usize,
    pub plugin: Plugin,
    pub config: Vec<(String, String)>,
    pub grants: TaskConfig,
}

/// A connector's converters, formats and chain.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub chain: Chain,
    pub key_converter: Converter,
    pub value_converter: Converter,
    pub key_format: Format,
    pub value_format: Format,
    pub wasm: Vec<WasmStep>,
}

impl Pipe {
    /// Whether keys (`.0`) and values (`.1`) are JSON documents on both sides of the chain:
    /// the plugin's bytes are JSON and so is the converter. A WebAssembly step then gets JSON
    /// text (a string quoted) and its output is read as JSON again; on any other side it
    /// gets and gives bytes.
    pub fn json_sides(&self) -> (bool, bool) {
        let json =
            |f: Format, c: Converter| f != Format::Bytes && matches!(c, Converter::Json { .. });
        (
            json(self.key_format, self.key_converter),
            json(self.value_format, self.value_converter),
        )
    }

    /// Nothing to do: bytes go through as they are.
    pub fn passthrough(&self) -> bool {
        self.chain.is_empty()
            && self.key_converter.is_bytes()
            && self.value_converter.is_bytes()
            && self.key_format != Format::ConnectJson
            && self.value_format != Format::ConnectJson
    }
}

/// A task's instance of a pipe.
pub(crate) struct Pipeline {
    pub pipe: Arc<Pipe>,
    /// One transform task per WebAssembly step, by step index.
    wasm: Vec<(usize, TransformTask)>,
    /// Envelope checks of keys and values.
    checks: [EnvelopeCheck; 2],
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("wasm_steps", &self.wasm.len())
            .finish()
    }
}

/// A record ready for the log.
#[derive(Debug)]
pub(crate) struct OutRec {
    pub topic: String,
    pub partition: Option<i32>,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Pipeline {
    pub fn new(pipe: Arc<Pipe>, host: &Host, task: &str) -> Result<Pipeline, String> {
        let mut wasm = Vec::new();
        for s in &pipe.wasm {
            let mut tc = s.grants.clone();
            tc.task = format!("{task}-{}", pipe.chain.steps[s.index].name);
            let t = s
                .plugin
                .transform(host, &s.config, &tc)
                .map_err(|e| format!("transform {}: {e}", pipe.chain.steps[s.index].name))?;
            wasm.push((s.index, t));
        }
        Ok(Pipeline {
            pipe,
            wasm,
            checks: Default::default(),
        })
    }

    /// Runs the chain; failures go to the reporter (tolerated or not). `json` says whether
    /// keys and values are JSON on this side of the converters: a WebAssembly step's output
    /// is then read as JSON again (a record whose output is not is a bad record).
    /// `orig` is the batch the records were read from: a record that fails goes to the dead
    /// letter queue as it was read.
    fn chain(
        &mut self,
        recs: Vec<Rec>,
        orig: &Batch<'_>,
        reporter: &Reporter,
        json: (bool, bool),
    ) -> Result<Vec<Rec>, Failure> {
        let wasm = &mut self.wasm;
        let pipe = &self.pipe;
        pipe.chain.apply(
            recs,
            &mut |i, mut recs| {
                let (_, task) = wasm
                    .iter_mut()
                    .find(|(j, _)| *j == i)
                    .ok_or_else(|| Failure::retriable("no instance for a WebAssembly step"))?;
                // A record the plugin reports bad is reported; the rest is sent again.
                loop {
                    if recs.is_empty() {
                        return Ok(recs);
                    }
                    let input = to_batch(&recs, json).map_err(Failure::retriable)?;
                    match task.apply(&input) {
                        // The records as they were: nothing to read back.
                        Ok(Output::Passthrough) => return Ok(recs),
                        Ok(Output::Select(picked)) => {
                            let n = recs.len();
                            let mut uses = vec![0u32; n];
                            for &i in &picked {
                                let u = uses.get_mut(i as usize).ok_or_else(|| {
                                    Failure::retriable(format!(
                                        "the transform selected record {i} of {n}"
                                    ))
                                })?;
                                *u += 1;
                            }
                            let mut slots: Vec<Option<Rec>> = recs.into_iter().map(Some).collect();
                            let mut out = Vec::with_capacity(picked.len());
                            for i in picked {
                                let i = i as usize;
                                uses[i] -= 1;
                                // The last use takes the record; earlier ones copy it.
                                let r = if uses[i] == 0 {
                                    slots[i].take()
                                } else {
                                    slots[i].clone()
                                };
                                out.extend(r);
                            }
                            return Ok(out);
                        }
                        Ok(Output::Replace(bytes)) => {
                            let batch = Batch::parse(&bytes)
                                .map_err(|e| Failure::retriable(e.to_string()))?;
                            let mut out = merge_output(recs, &batch);
                            if json != (false, false) {
                                out = reread_json(
                                    out,
                                    json,
                                    orig,
                                    &pipe.chain.steps[i].class,
                                    reporter,
                                )?;
                            }
                            return Ok(out);
                        }
                        Err(e) => match bad_record(&e) {
                            Some((index, why)) if (index as usize) < recs.len() => {
                                let r = recs.remove(index as usize);
                                reporter.report(
                                    Stage::Transformation,
                                    Some(&pipe.chain.steps[i].class),
                                    dead(&r, orig),
                                    &why,
                                )?;
                            }
                            _ => return Err(e.into()),
                        },
                    }
                }
            },
            &mut |r, class, why| {
                reporter.report(Stage::Transformation, Some(class), dead(r, orig), &why)
            },
        )
    }

    /// A side whose bytes are the same for the plugin and in the topic: a plugin that
    /// declared connect-json, JsonConverter with schemas, no transform in between. Its bytes
    /// are checked (JSON with exactly `schema` and `payload`) without being rebuilt.
    fn as_written(&self) -> (bool, bool) {
        let same = |f: Format, c: Converter| {
            f == Format::ConnectJson && c == Converter::Json { schemas: true }
        };
        let none = self.pipe.chain.is_empty();
        (
            none && same(self.pipe.key_format, self.pipe.key_converter),
            none && same(self.pipe.value_format, self.pipe.value_converter),
        )
    }

    /// Each side's way to the log when neither needs rebuilding: no transform, and each
    /// converter takes the plugin's bytes as they are or out of their envelope.
    fn directs(&self) -> Option<(Direct, Direct)> {
        if !self.pipe.chain.is_empty() {
            return None;
        }
        let side = |f: Format, c: Converter| match (f, c) {
            (Format::Bytes, Converter::ByteArray) => Some(Direct::AsIs),
            (Format::ConnectJson, Converter::Json { schemas: true }) => Some(Direct::Envelope),
            (Format::ConnectJson, Converter::Json { schemas: false }) => Some(Direct::Payload),
            _ => None,
        };
        Some((
            side(self.pipe.key_format, self.pipe.key_converter)?,
            side(self.pipe.value_format, self.pipe.value_converter)?,
        ))
    }

    /// A polled batch's keys and values as they go to the log, borrowed from it, when no
    /// record needs more than a check ([`Direct`]); `None` otherwise, or when a record fails
    /// its check ([`Pipeline::source_records`] then reports it).
    #[allow(clippy::type_complexity)]
    pub fn source_direct<'b>(
        &mut self,
        batch: &Batch<'b>,
    ) -> Option<Vec<(Option<&'b [u8]>, Option<&'b [u8]>)>> {
        let (k, v) = self.directs()?;
        let [kc, vc] = &mut self.checks;
        let side = |d: Direct, check: &mut EnvelopeCheck, b: Option<&'b [u8]>| match (d, b) {
            (Direct::AsIs, b) | (_, b @ None) => Some(b),
            (Direct::Envelope, Some(b)) => check.payload(b).ok().map(|_| Some(b)),
            (Direct::Payload, Some(b)) => check
                .payload(b)
                .ok()
                .map(|p| (!crate::jsontext::is_null(p)).then_some(p)),
        };
        batch
            .iter()
            .map(|r| Some((side(k, kc, r.key())?, side(v, vc, r.value())?)))
            .collect()
    }

    /// A source's polled batch through the chain and the converters.
    pub fn source_records(
        &mut self,
        batch: &Batch<'_>,
        reporter: &Reporter,
    ) -> Result<Vec<OutRec>, Failure> {
        let (key_as_is, value_as_is) = self.as_written();
        let mut recs = Vec::with_capacity(batch.len());
        let (key_format, value_format) = (self.pipe.key_format, self.pipe.value_format);
        let [kc, vc] = &mut self.checks;
        for mut r in from_batch(batch) {
            let side = |as_is: bool, check: &mut EnvelopeCheck, format: Format, d: Data| {
                if as_is {
                    checked_envelope(check, d)
                } else {
                    read(format, d)
                }
            };
            let key = side(
                key_as_is,
                kc,
                key_format,
                std::mem::replace(&mut r.key, Data::Raw(None)),
            );
            let value = side(
                value_as_is,
                vc,
                value_format,
                std::mem::replace(&mut r.value, Data::Raw(None)),
            );
            match (key, value) {
                (Ok(k), Ok(v)) => {
                    r.key = k;
                    r.value = v;
                    recs.push(r);
                }
                (Err(e), _) | (_, Err(e)) => {
                    reporter.report(Stage::TaskPoll, None, dead(&r, batch), &e)?;
                }
            }
        }
        let json = self.pipe.json_sides();
        let recs = self.chain(recs, batch, reporter, json)?;
        Ok(recs
            .into_iter()
            .map(|r| OutRec {
                topic: r.topic,
                partition: r.partition,
                timestamp: r.timestamp,
                key: if key_as_is {
                    r.key.into_bytes()
                } else {
                    self.pipe.key_converter.serialize(r.key)
                },
                value: if value_as_is {
                    r.value.into_bytes()
                } else {
                    self.pipe.value_converter.serialize(r.value)
                },
                headers: r.headers,
            })
            .collect())
    }

    /// Records read from the log (as a batch) through the converters and the chain, as the
    /// batch the sink plugin gets with the last offset in it (`None`: none is left).
    pub fn sink_batch(
        &mut self,
        read: &Batch<'_>,
        reporter: &Reporter,
    ) -> Result<Option<(Vec<u8>, i64)>, Failure> {
        let (key_as_is, value_as_is) = self.as_written();
        let mut ok = Vec::with_capacity(read.len());
        let (key_converter, value_converter) = (self.pipe.key_converter, self.pipe.value_converter);
        // The schema a topic's records repeat is checked once, not per record.
        let [kc, vc] = &mut self.checks;
        for mut r in from_batch(read) {
            // A record that fails goes to the dead letter queue as read (`origin`).
            let side = |as_is: bool, check: &mut EnvelopeCheck, c: Converter, d: Data| {
                if as_is {
                    checked_envelope(check, d)
                } else {
                    deserialize(c, d)
                }
            };
            let key = side(key_as_is, kc, key_converter, std::mem::take(&mut r.key));
            let value = side(
                value_as_is,
                vc,
                value_converter,
                std::mem::take(&mut r.value),
            );
            match (key, value) {
                (Ok(k), Ok(v)) => {
                    r.key = k;
                    r.value = v;
                    ok.push(r);
                }
                (Err(e), _) => reporter.report(
                    Stage::KeyConverter,
                    Some(self.pipe.key_converter.class()),
                    dead(&r, read),
                    &e,
                )?,
                (_, Err(e)) => reporter.report(
                    Stage::ValueConverter,
                    Some(self.pipe.value_converter.class()),
                    dead(&r, read),
                    &e,
                )?,
            }
        }
        let json = self.pipe.json_sides();
        let mut recs = self.chain(ok, read, reporter, json)?;
        if recs.is_empty() {
            return Ok(None);
        }
        let last = recs.iter().filter_map(|r| r.offset).max().unwrap_or(-1);
        for r in &mut recs {
            if !key_as_is {
                r.key = Data::Raw(
                    self.pipe
                        .key_format
                        .write(std::mem::replace(&mut r.key, Data::Raw(None))),
                );
            }
            if !value_as_is {
                r.value = Data::Raw(
                    self.pipe
                        .value_format
                        .write(std::mem::replace(&mut r.value, Data::Raw(None))),
                );
            }
        }
        to_batch(&recs, (false, false))
            .map(|b| Some((b, last)))
            .map_err(Failure::retriable)
    }
}

/// A plugin's `{schema, payload}` bytes, checked to be what JsonConverter reads (JSON with
/// exactly those two fields) and kept as they are.
fn checked_envelope(check: &mut EnvelopeCheck, d: Data) -> Result<Data, String> {
    if let Data::Raw(Some(b)) = &d {
        check.payload(b)?;
    }
    Ok(d)
}

/// How one side (key or value) of a source record reaches the log when nothing in between
/// needs its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    /// Bytes as the plugin wrote them (ByteArrayConverter).
    AsIs,
    /// A checked `{schema, payload}` envelope as written (JsonConverter with schemas).
    Envelope,
    /// The payload of a checked envelope (JsonConverter without schemas), JSON's `null` as
    /// a null.
    Payload,
}

/// Checks `{schema, payload}` envelopes. A source writes the same schema text for every
/// record of a table, so the schema last found in the canonical layout
/// (`{"schema":<schema>,"payload":<payload>}`) is remembered: bytes in that layout with the
/// same schema text only need their payload checked.
#[derive(Debug, Default)]
struct EnvelopeCheck {
    schema: Vec<u8>,
}

impl EnvelopeCheck {
    const HEAD: &[u8] = b"{\"schema\":";
    const MID: &[u8] = b",\"payload\":";

    /// The payload's JSON text of an envelope, or why it is not one.
    fn payload<'b>(&mut self, b: &'b [u8]) -> Result<&'b [u8], String> {
        if !self.schema.is_empty()
            && let Some(rest) = b.strip_prefix(Self::HEAD)
            && let Some(rest) = rest.strip_prefix(self.schema.as_slice())
            && let Some(rest) = rest.strip_prefix(Self::MID)
            && let Some(p) = rest.strip_suffix(b"}")
            && crate::jsontext::validate(p).is_ok()
        {
            return Ok(p);
        }
        let bad = |e: &str| {
            format!(
                "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not contain additional fields: {e}"
            )
        };
        crate::jsontext::validate(b).map_err(|e| bad(&e))?;
        let members = crate::jsontext::members(b).ok_or_else(|| bad("not a JSON object"))?;
        let field = |name: &str| {
            let mut found = members.iter().filter(|m| m.name == name);
            match (found.next(), found.next()) {
                (Some(m), None) => Ok(m),
                (None, _) => Err(bad(&format!("missing field `{name}`"))),
                (Some(_), Some(_)) => Err(bad(&format!("duplicate field `{name}`"))),
            }
        };
        let (schema, payload) = (field("schema")?, field("payload")?);
        if let Some(other) = members
            .iter()
            .find(|m| m.name != "schema" && m.name != "payload")
        {
            return Err(bad(&format!("unknown field `{}`", other.name)));
        }
        let (Cow::Borrowed(s), Cow::Borrowed(p)) = (&schema.value, &payload.value) else {
            return Err(bad("not a JSON object"));
        };
        // In the canonical layout, the schema's text is remembered.
        let canonical = b.len() == Self::HEAD.len() + s.len() + Self::MID.len() + p.len() + 1
            && b.starts_with(Self::HEAD)
            && b[Self::HEAD.len()..].starts_with(s)
            && b[Self::HEAD.len() + s.len()..].starts_with(Self::MID);
        if canonical && s.len() >= 16 {
            self.schema.clear();
            self.schema.extend_from_slice(s);
        }
        Ok(p)
    }
}

/// A WebAssembly step's output batch as records. When it has one record per input record,
/// each is taken to come from the same record read (`origin`), and fields it left as they
/// were keep their decoded form (no copy of the topic, source fields or headers).
fn merge_output(recs: Vec<Rec>, batch: &Batch<'_>) -> Vec<Rec> {
    if batch.len() != recs.len() {
        let mut out = from_batch(batch);
        for r in &mut out {
            r.origin = None;
        }
        return out;
    }
    recs.into_iter()
        .zip(batch.iter())
        .map(|(mut r, o)| {
            if r.topic != o.topic() {
                r.topic = o.topic().to_string();
            }
            r.partition = o.partition();
            r.offset = o.offset();
            r.timestamp = o.timestamp();
            r.key = Data::Raw(o.key().map(<[u8]>::to_vec));
            r.value = Data::Raw(o.value().map(<[u8]>::to_vec));
            if !r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_deref()))
                .eq(o.headers().map(|h| (h.name, h.value)))
            {
                r.headers = o
                    .headers()
                    .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect();
            }
            if r.source_partition.as_deref() != o.source_partition() {
                r.source_partition = o.source_partition().map(<[u8]>::to_vec);
            }
            if r.source_offset.as_deref() != o.source_offset() {
                r.source_offset = o.source_offset().map(<[u8]>::to_vec);
            }
            r
        })
        .collect()
}

/// A WebAssembly step's output where keys (`json.0`) or values (`json.1`) are JSON: their
/// bytes read as JSON documents again, so a converter writes them as JSON and not as text.
fn reread_json(
    recs: Vec<Rec>,
    json: (bool, bool),
    orig: &Batch<'_>,
    class: &str,
    reporter: &Reporter,
) -> Result<Vec<Rec>, Failure> {
    let mut out = Vec::with_capacity(recs.len());
    for mut r in recs {
        let mut bad = None;
        for (on, d, what) in [(json.0, &mut r.key, "key"), (json.1, &mut r.value, "value")] {
            if let (true, Data::Raw(Some(b))) = (on, &mut *d) {
                match crate::jsontext::validate(b) {
                    Ok(()) => *d = Data::json_text(std::mem::take(b)),
                    Err(e) => bad = Some(format!("the transform's {what} is not JSON: {e}")),
                }
            }
        }
        match bad {
            None => out.push(r),
            Some(e) => reporter.report(Stage::Transformation, Some(class), dead(&r, orig), &e)?,
        }
    }
    Ok(out)
}

/// A record as the dead letter queue gets it: as it was read (polled from the source, or
/// read from the log) when it is known which record it came from, else as it is now.
fn dead(r: &Rec, orig: &Batch<'_>) -> DeadRecord {
    if let Some(o) = r.origin.and_then(|i| orig.get(i as usize)) {
        return DeadRecord::of(&o);
    }
    DeadRecord {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.clone().into_bytes(),
        value: r.value.clone().into_bytes(),
        headers: r.headers.clone(),
    }
}

/// A plugin's bytes as data; JSON text is kept in the buffer it came in.
fn read(f: Format, d: Data) -> Result<Data, String> {
    match (f, d) {
        (Format::Bytes, d) => Ok(d),
        (Format::Json, Data::Raw(Some(b))) => owned_json(b, "the plugin's JSON does not parse"),
        (f, Data::Raw(b)) => f.read(b.as_deref()),
        (_, d) => Ok(d),
    }
}

/// Log bytes as data; schemaless JSON text is kept in the buffer it came in.
fn deserialize(c: Converter, d: Data) -> Result<Data, String> {
    match (c, d) {
        (Converter::ByteArray | Converter::String, d) => Ok(d),
        (Converter::Json { schemas: false }, Data::Raw(Some(b))) => {
            owned_json(b, "converting bytes to JSON failed")
        }
        (c, Data::Raw(b)) => c.deserialize(b.as_deref()),
        (_, d) => Ok(d),
    }
}

fn owned_json(b: Vec<u8>, what: &str) -> Result<Data, String> {
    crate::jsontext::validate(&b).map_err(|e| format!("{what}: {e}"))?;
    Ok(Data::json_text(b))
}

#[cfg(test)]
mod tests {
    use super::EnvelopeCheck;

    const SCHEMA: &str = r#"{"type":"struct","fields":[{"field":"id","type":"int32"}]}"#;

    fn env(payload: &str) -> Vec<u8> {
        format!(r#"{{"schema":{SCHEMA},"payload":{payload}}}"#).into_bytes()
    }

    #[test]
    fn envelopes_are_checked_and_their_payload_found() {
        let mut c = EnvelopeCheck::default();
        assert_eq!(c.payload(&env(r#"{"id":1}"#)).unwrap(), br#"{"id":1}"#);
        // The canonical layout's schema is remembered; the next record's payload is still
        // checked on its own.
        assert_eq!(c.schema, SCHEMA.as_bytes());
        assert_eq!(c.payload(&env("null")).unwrap(), b"null");
        for bad in [
            r#"{"id":1"#,
            r#"{"id":1}},"x":{"#,
            "",
            r#"{"id":1},"extra":2"#,
        ] {
            let e = c.payload(&env(bad)).unwrap_err();
            assert!(
                e.contains("requires \"schema\" and \"payload\""),
                "{bad}: {e}"
            );
        }
        // Any order and whitespace JsonConverter reads are accepted (and not remembered).
        let spaced = format!(r#"{{ "payload" : 5 , "schema" : {SCHEMA} }}"#);
        let mut fresh = EnvelopeCheck::default();
        assert_eq!(fresh.payload(spaced.as_bytes()).unwrap(), b"5");
        assert!(fresh.schema.is_empty());
    }

    #[test]
    fn what_is_not_an_envelope_is_refused_with_the_reason() {
        let mut c = EnvelopeCheck::default();
        let cases = [
            (r#"{"payload":1}"#.to_string(), "missing field `schema`"),
            (r#"{"schema":null}"#.to_string(), "missing field `payload`"),
            (
                format!(r#"{{"schema":{SCHEMA},"payload":1,"payload":2}}"#),
                "duplicate field `payload`",
            ),
            (
                format!(r#"{{"schema":{SCHEMA},"payload":1,"x":2}}"#),
                "unknown field `x`",
            ),
            ("[1,2]".to_string(), "not a JSON object"),
            ("{\"schema\":1,".to_string(), "EOF"),
        ];
        for (doc, why) in cases {
            let e = c.payload(doc.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{doc}: {e}");
        }
        // A different schema after a remembered one is checked in full.
        c.payload(&env("1")).unwrap();
        let other = br#"{"schema":{"type":"int64","optional":false},"payload":7}"#;
        assert_eq!(c.payload(other).unwrap(), b"7");
        assert!(
            c.payload(br#"{"schema":{"type":"int64"},"payload":7,}"#)
                .is_err()
        );
    }
}
