//! What stands between a plugin and the log: converters and the transform chain. A task
//! builds its [`Pipeline`] (instantiating its WebAssembly transforms) from the connector's
//! [`Pipe`]. When nothing needs structure, the task's loops skip all of it and bytes pass
//! through untouched.

use std::sync::Arc;

use weir_batch::Batch;
use weir_host::{Host, Plugin, TaskConfig, TransformTask};

use crate::convert::{Converter, Data, Format};
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

    fn chain(&mut self, recs: Vec<Rec>) -> Result<Vec<Rec>, String> {
        let wasm = &mut self.wasm;
        let pipe = &self.pipe;
        pipe.chain.apply(recs, &mut |i, recs| {
            if recs.is_empty() {
                return Ok(recs);
            }
            let (_, task) = wasm
                .iter_mut()
                .find(|(j, _)| *j == i)
                .ok_or("no instance for a WebAssembly step")?;
            let input = to_batch(recs)?;
            let out = task.apply(&input).map_err(|e| e.to_string())?;
            let bytes = weir_host::output_batch(&input, out).map_err(|e| e.to_string())?;
            let batch = Batch::parse(&bytes).map_err(|e| e.to_string())?;
            Ok(from_batch(&batch))
        })
    }

    /// A source's polled batch through the chain and the converters.
    pub fn source_records(&mut self, batch: &Batch<'_>) -> Result<Vec<OutRec>, String> {
        let mut recs = from_batch(batch);
        for r in &mut recs {
            r.key = read(
                self.pipe.key_format,
                std::mem::replace(&mut r.key, Data::Raw(None)),
            )
            .map_err(|e| format!("record {} key: {e}", r.offset.unwrap_or(-1)))?;
            r.value = read(
                self.pipe.value_format,
                std::mem::replace(&mut r.value, Data::Raw(None)),
            )
            .map_err(|e| format!("record value: {e}"))?;
        }
        let recs = self.chain(recs)?;
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
    /// plugin gets (`None`: the chain dropped them all).
    pub fn sink_batch(&mut self, recs: Vec<Rec>) -> Result<Option<Vec<u8>>, String> {
        let mut recs = recs;
        for r in &mut recs {
            let at = format!(
                "{}-{} offset {}",
                r.topic,
                r.partition.unwrap_or(-1),
                r.offset.unwrap_or(-1)
            );
            r.key = deserialize(self.pipe.key_converter, &r.key)
                .map_err(|e| format!("{at}: key: {e}"))?;
            r.value = deserialize(self.pipe.value_converter, &r.value)
                .map_err(|e| format!("{at}: value: {e}"))?;
        }
        let mut recs = self.chain(recs)?;
        if recs.is_empty() {
            return Ok(None);
        }
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
        to_batch(recs).map(Some)
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
