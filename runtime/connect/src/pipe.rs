//! What stands between a plugin and the log: converters and the transform chain. A task
//! builds its [`Pipeline`] (instantiating its WebAssembly transforms) from the connector's
//! [`Pipe`]. When nothing needs structure, the task's loops skip all of it and bytes pass
//! through untouched.

use std::sync::Arc;

use weir_batch::Batch;
use weir_host::{Host, Plugin, TaskConfig, TransformTask};

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
        Ok(Pipeline { pipe, wasm })
    }

    /// Runs the chain; failures go to the reporter (tolerated or not).
    fn chain(&mut self, recs: Vec<Rec>, reporter: &Reporter) -> Result<Vec<Rec>, Failure> {
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
                    let input = to_batch(&recs).map_err(Failure::retriable)?;
                    match task.apply(&input) {
                        Ok(out) => {
                            let bytes = weir_host::output_batch(&input, out)
                                .map_err(|e| Failure::retriable(e.to_string()))?;
                            let batch = Batch::parse(&bytes)
                                .map_err(|e| Failure::retriable(e.to_string()))?;
                            return Ok(from_batch(&batch));
                        }
                        Err(e) => match bad_record(&e) {
                            Some((index, why)) if (index as usize) < recs.len() => {
                                let r = recs.remove(index as usize);
                                reporter.report(Stage::Transformation, dead(&r), &why)?;
                            }
                            _ => return Err(e.into()),
                        },
                    }
                }
            },
            &mut |r, why| reporter.report(Stage::Transformation, dead(r), &why),
        )
    }

    /// A source's polled batch through the chain and the converters.
    pub fn source_records(
        &mut self,
        batch: &Batch<'_>,
        reporter: &Reporter,
    ) -> Result<Vec<OutRec>, Failure> {
        let mut recs = Vec::with_capacity(batch.len());
        for mut r in from_batch(batch) {
            let key = read(
                self.pipe.key_format,
                std::mem::replace(&mut r.key, Data::Raw(None)),
            );
            let value = read(
                self.pipe.value_format,
                std::mem::replace(&mut r.value, Data::Raw(None)),
            );
            match (key, value) {
                (Ok(k), Ok(v)) => {
                    r.key = k;
                    r.value = v;
                    recs.push(r);
                }
                (Err(e), _) | (_, Err(e)) => {
                    reporter.report(Stage::TaskPoll, dead(&r), &e)?;
                }
            }
        }
        let recs = self.chain(recs, reporter)?;
        Ok(recs
            .into_iter()
            .map(|r| OutRec {
                topic: r.topic,
                partition: r.partition,
                timestamp: r.timestamp,
                key: self.pipe.key_converter.serialize(r.key),
                value: self.pipe.value_converter.serialize(r.value),
                headers: r.headers,
            })
            .collect())
    }

    /// Records read from the log through the converters and the chain, as the batch the sink
    /// plugin gets with the last offset in it (`None`: none is left).
    pub fn sink_batch(
        &mut self,
        recs: Vec<Rec>,
        reporter: &Reporter,
    ) -> Result<Option<(Vec<u8>, i64)>, Failure> {
        let mut ok = Vec::with_capacity(recs.len());
        for mut r in recs {
            let key = deserialize(self.pipe.key_converter, &r.key);
            let value = deserialize(self.pipe.value_converter, &r.value);
            match (key, value) {
                (Ok(k), Ok(v)) => {
                    r.key = k;
                    r.value = v;
                    ok.push(r);
                }
                (Err(e), _) => reporter.report(Stage::KeyConverter, dead(&r), &e)?,
                (_, Err(e)) => reporter.report(Stage::ValueConverter, dead(&r), &e)?,
            }
        }
        let mut recs = self.chain(ok, reporter)?;
        if recs.is_empty() {
            return Ok(None);
        }
        let last = recs.iter().filter_map(|r| r.offset).max().unwrap_or(-1);
        for r in &mut recs {
            r.key = Data::Raw(
                self.pipe
                    .key_format
                    .write(std::mem::replace(&mut r.key, Data::Raw(None))),
            );
            r.value = Data::Raw(
                self.pipe
                    .value_format
                    .write(std::mem::replace(&mut r.value, Data::Raw(None))),
            );
        }
        to_batch(&recs)
            .map(|b| Some((b, last)))
            .map_err(Failure::retriable)
    }
}

/// A record as the dead letter queue gets it.
fn dead(r: &Rec) -> DeadRecord {
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

fn read(f: Format, d: Data) -> Result<Data, String> {
    match d {
        Data::Raw(b) => f.read(b.as_deref()),
        d => Ok(d),
    }
}

fn deserialize(c: Converter, d: &Data) -> Result<Data, String> {
    match d {
        Data::Raw(b) => c.deserialize(b.as_deref()),
        d => Ok(d.clone()),
    }
}
