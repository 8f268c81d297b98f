//! The runtime's state in compacted one-partition topics, as Kafka Connect keeps it:
//! connector configs and target states (`connect-configs`), source offsets
//! (`connect-offsets`), statuses (`connect-status`). Each is read whole at start; every change
//! is one keyed record (a null value deletes), so compaction keeps the latest of each key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_cluster::{Cluster, ClusterError};

use crate::ConnectError;

/// A compacted topic read into memory.
#[derive(Debug, Clone)]
pub struct TopicStore {
    cluster: Arc<dyn Cluster>,
    topic: String,
}

impl TopicStore {
    /// Creates the topic (compacted, one partition) unless it exists.
    pub async fn open(cluster: Arc<dyn Cluster>, topic: &str) -> Result<TopicStore, ConnectError> {
        let mut cfg = BTreeMap::new();
        cfg.insert("cleanup.policy".to_string(), "compact".to_string());
        match cluster.create_topic(topic, 1, cfg).await {
            Ok(_) | Err(ClusterError::TopicExists(_)) => {}
            Err(e) => return Err(ConnectError::Cluster(e)),
        }
        Ok(TopicStore {
            cluster,
            topic: topic.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every live key with its latest value, in log order of their last write.
    pub async fn read_all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ConnectError> {
        let end = self.cluster.offsets(&self.topic, 0).await?;
        let mut offset = end.log_start;
        let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
        while offset < end.log_end {
            let f = self
                .cluster
                .fetch(&self.topic, 0, offset, 1 << 20, Duration::ZERO)
                .await?;
            if f.records.is_empty() {
                break;
            }
            let before = offset;
            for (h, range) in weir_log::batch::split_validated(&f.records)
                .map_err(|e| ConnectError::Internal(format!("{}: {e}", self.topic)))?
            {
                for r in weir_log::batch::decode_records(&f.records[range])
                    .map_err(|e| ConnectError::Internal(format!("{}: {e}", self.topic)))?
                {
                    if r.offset < offset {
                        continue;
                    }
                    if let Some(k) = r.key {
                        latest.insert(k.to_vec(), (r.offset, r.value.map(|v| v.to_vec())));
                    }
                    offset = r.offset + 1;
                }
                offset = offset.max(h.last_offset() + 1);
            }
            if offset == before {
                break;
            }
        }
        let mut live: Vec<(i64, Vec<u8>, Vec<u8>)> = latest
            .into_iter()
            .filter_map(|(k, (o, v))| Some((o, k, v?)))
            .collect();
        live.sort_by_key(|(o, _, _)| *o);
        Ok(live.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    /// Writes records (`None`: delete the key) in one batch; resolves once stored.
    pub async fn put(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), ConnectError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = weir_log::now_ms();
        let recs: Vec<_> = records
            .iter()
            .map(|(k, v)| weir_log::batch::new_record(Some(k), v.as_deref(), now))
            .collect();
        let batch: Bytes = weir_log::batch::build(&recs);
        self.cluster.produce(&self.topic, 0, batch).await?;
        Ok(())
    }
}

/// A source offset key in Kafka Connect's format: `["<connector>", <partition>]`. A plugin's
/// partition and offset bytes are JSON (as Kafka's are maps); bytes that are not JSON are
/// kept as a JSON string of their UTF-8 (lossless for text) or an array of byte values.
pub fn offset_key(connector: &str, partition: &[u8]) -> Vec<u8> {
    let v = serde_json::Value::Array(vec![
        serde_json::Value::String(connector.to_string()),
        bytes_to_json(partition),
    ]);
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The JSON a plugin's partition or offset bytes stand for.
pub fn bytes_to_json(b: &[u8]) -> serde_json::Value {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
        return v;
    }
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::json!({ "weir.text": s }),
        Err(_) => serde_json::json!({ "weir.bytes": b }),
    }
}

/// The bytes a JSON partition or offset gives back to a plugin (inverse of [`bytes_to_json`]).
pub fn json_to_bytes(v: &serde_json::Value) -> Vec<u8> {
    if let Some(o) = v.as_object()
        && o.len() == 1
    {
        if let Some(s) = o.get("weir.text").and_then(|s| s.as_str()) {
            return s.as_bytes().to_vec();
        }
        if let Some(a) = o.get("weir.bytes").and_then(|a| a.as_array()) {
            return a.iter().map(|x| x.as_u64().unwrap_or(0) as u8).collect();
        }
    }
    serde_json::to_vec(v).unwrap_or_default()
}

/// Parses an offsets-topic key: (connector, partition bytes).
pub fn parse_offset_key(key: &[u8]) -> Option<(String, Vec<u8>)> {
    let v: serde_json::Value = serde_json::from_slice(key).ok()?;
    let a = v.as_array()?;
    if a.len() != 2 {
        return None;
    }
    Some((a[0].as_str()?.to_string(), json_to_bytes(&a[1])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_keys_round_trip() {
        for p in [
            &br#"{"filename":"/tmp/a"}"#[..],
            b"plain text",
            &[0xff, 0, 1],
        ] {
            let k = offset_key("c", p);
            let (c, back) = parse_offset_key(&k).unwrap();
            assert_eq!(c, "c");
            assert_eq!(
                back,
                serde_json::to_vec(&bytes_to_json(p))
                    .ok()
                    .filter(|_| p.starts_with(b"{"))
                    .unwrap_or(p.to_vec())
            );
        }
        assert_eq!(
            String::from_utf8(offset_key("src", br#"{"filename":"/tmp/a"}"#)).unwrap(),
            r#"["src",{"filename":"/tmp/a"}]"#
        );
    }
}
