//! An in-memory engine with the same semantics as the disk engine for append, read, offsets and
//! time lookups. It exists so the broker can be tested without a disk. Retention treats each
//! batch as a segment; compaction and durability are no-ops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{self, BatchHeader};
use crate::validate;
use crate::{
    AppendInfo, BrokerOverrides, LogError, MaintenanceReport, PartitionOffsets, ReadResult,
    Storage, TopicConfig, TopicInfo, validate_topic_name,
};

#[derive(Debug, Default)]
struct MemPartition {
    /// (header with the assigned base offset, bytes).
    batches: Vec<(BatchHeader, Bytes)>,
    log_start: i64,
    next: i64,
}

#[derive(Debug)]
struct MemTopic {
    info: TopicInfo,
    partitions: Vec<Mutex<MemPartition>>,
}

/// The in-memory storage engine.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    static_defaults: Arc<TopicConfig>,
    /// Dynamic broker-level overrides and the defaults they give.
    broker: RwLock<(BrokerOverrides, Arc<TopicConfig>)>,
    topics: RwLock<HashMap<String, MemTopic>>,
}

fn poisoned<T>(_: T) -> LogError {
    LogError::Io(std::io::Error::other("storage lock poisoned"))
}

impl MemoryStorage {
    pub fn new(defaults: TopicConfig) -> Self {
        let defaults = Arc::new(defaults);
        MemoryStorage {
            static_defaults: defaults.clone(),
            broker: RwLock::new((BrokerOverrides::default(), defaults)),
            topics: RwLock::default(),
        }
    }

    fn current_defaults(&self) -> Arc<TopicConfig> {
        self.broker
            .read()
            .map(|b| b.1.clone())
            .unwrap_or_else(|e| e.into_inner().1.clone())
    }

    fn with_partition<R>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&TopicInfo, &mut MemPartition) -> Result<R, LogError>,
    ) -> Result<R, LogError> {
        let topics = self.topics.read().map_err(poisoned)?;
        let t = topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopicOrPartition(topic.to_string()))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .ok_or_else(|| LogError::UnknownTopicOrPartition(format!("{topic}-{partition}")))?;
        let mut p = p.lock().map_err(poisoned)?;
        f(&t.info, &mut p)
    }
}

impl Storage for MemoryStorage {
    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > 10_000 {
            return Err(LogError::InvalidPartitions(format!(
                "{partitions} (must be 1..=10000)"
            )));
        }
        let config = Arc::new(self.current_defaults().with_overrides(&overrides)?);
        let mut topics = self.topics.write().map_err(poisoned)?;
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let info = TopicInfo {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions,
            overrides,
            config,
        };
        let parts = (0..partitions)
            .map(|_| Mutex::new(MemPartition::default()))
            .collect();
        topics.insert(
            name.to_string(),
            MemTopic {
                info: info.clone(),
                partitions: parts,
            },
        );
        Ok(info)
    }

    fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.topics
            .write()
            .map_err(poisoned)?
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string()))
    }

    fn create_partitions(&self, name: &str, total: u32) -> Result<(), LogError> {
        let mut topics = self.topics.write().map_err(poisoned)?;
        let t = topics
            .get_mut(name)
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string()))?;
        if total <= t.info.partitions {
            return Err(LogError::InvalidPartitions(format!(
                "{total} is not more than {}",
                t.info.partitions
            )));
        }
        while t.partitions.len() < total as usize {
            t.partitions.push(Mutex::new(MemPartition::default()));
        }
        t.info.partitions = total;
        Ok(())
    }

    fn topics(&self) -> Vec<TopicInfo> {
        let mut v: Vec<TopicInfo> = self
            .topics
            .read()
            .map(|t| t.values().map(|t| t.info.clone()).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.read().ok()?.get(name).map(|t| t.info.clone())
    }

    fn defaults(&self) -> Arc<TopicConfig> {
        self.current_defaults()
    }

    fn static_defaults(&self) -> Arc<TopicConfig> {
        self.static_defaults.clone()
    }

    fn broker_overrides(&self) -> BrokerOverrides {
        self.broker.read().map(|b| b.0.clone()).unwrap_or_default()
    }

    fn alter_broker_overrides(&self, overrides: BrokerOverrides) -> Result<(), LogError> {
        let defaults = Arc::new(overrides.apply(&self.static_defaults)?);
        let mut broker = self.broker.write().map_err(poisoned)?;
        let mut topics = self.topics.write().map_err(poisoned)?;
        for t in topics.values_mut() {
            t.info.config = Arc::new(defaults.with_overrides(&t.info.overrides)?);
        }
        *broker = (overrides, defaults);
        Ok(())
    }

    fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError> {
        let config = Arc::new(self.current_defaults().with_overrides(&overrides)?);
        let mut topics = self.topics.write().map_err(poisoned)?;
        let t = topics
            .get_mut(name)
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string()))?;
        t.info.overrides = overrides;
        t.info.config = config;
        Ok(t.info.clone())
    }

    fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, LogError> {
        self.with_partition(topic, partition, |_, p| {
            let target = if offset == -1 { p.next } else { offset };
            if target < 0 || target > p.next {
                return Err(LogError::OffsetOutOfRange {
                    offset: target,
                    log_start: p.log_start,
                    log_end: p.next,
                });
            }
            if target > p.log_start {
                p.log_start = target;
                p.batches.retain(|(h, _)| h.last_offset() >= target);
            }
            Ok(p.log_start)
        })
    }

    fn log_dir(&self) -> (String, Vec<(String, i32, u64)>) {
        let mut out = Vec::new();
        if let Ok(topics) = self.topics.read() {
            for (name, t) in topics.iter() {
                for (i, p) in t.partitions.iter().enumerate() {
                    let size = p
                        .lock()
                        .map(|p| p.batches.iter().map(|(_, b)| b.len() as u64).sum())
                        .unwrap_or(0);
                    out.push((name.clone(), i as i32, size));
                }
            }
        }
        out.sort();
        ("memory".to_string(), out)
    }

    fn append(&self, topic: &str, partition: i32, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.with_partition(topic, partition, |info, p| {
            let prepared =
                validate::prepare(records, &info.config, crate::now_ms(), (topic, partition))?;
            let base_offset = p.next;
            for (mut h, bytes) in prepared.batches {
                let mut b = BytesMut::with_capacity(bytes.len());
                b.put_i64(p.next);
                b.extend_from_slice(&bytes[8..]);
                h.base_offset = p.next;
                p.next += i64::from(h.last_offset_delta) + 1;
                p.batches.push((h, b.freeze()));
            }
            Ok(AppendInfo {
                base_offset,
                last_offset: p.next - 1,
                log_start_offset: p.log_start,
                needs_sync: false,
                visible: true,
                duplicate: false,
                log_append_time_ms: prepared.log_append_time_ms,
            })
        })
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.with_partition(topic, partition, |_, p| {
            if offset < p.log_start || offset > p.next {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: p.log_start,
                    log_end: p.next,
                });
            }
            let start = p.batches.partition_point(|(h, _)| h.last_offset() < offset);
            let mut out = BytesMut::new();
            for (_, b) in &p.batches[start..] {
                if (!out.is_empty() || !min_one) && out.len() + b.len() > max_bytes {
                    break;
                }
                out.extend_from_slice(b);
            }
            Ok(ReadResult {
                records: out.freeze(),
                high_watermark: p.next,
                log_start_offset: p.log_start,
            })
        })
    }

    fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError> {
        self.with_partition(topic, partition, |_, p| {
            Ok(PartitionOffsets {
                log_start: p.log_start,
                log_end: p.next,
            })
        })
    }

    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        self.with_partition(topic, partition, |_, p| {
            let target = if ts == -3 {
                match p.batches.iter().map(|(h, _)| h.max_timestamp).max() {
                    Some(m) => m,
                    None => return Ok(None),
                }
            } else {
                ts
            };
            for (h, b) in &p.batches {
                if h.max_timestamp >= target {
                    let records = batch::decode_records(b)?;
                    if let Some(r) = records.iter().find(|r| r.timestamp >= target) {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            Ok(None)
        })
    }

    fn sync_to(&self, _topic: &str, _partition: i32, _up_to: i64) -> Result<(), LogError> {
        Ok(())
    }

    fn flush_due(&self, _now_ms: i64) -> Result<usize, LogError> {
        Ok(0)
    }

    fn maintain(&self, now: i64) -> Result<MaintenanceReport, LogError> {
        let topics = self.topics.read().map_err(poisoned)?;
        let mut report = MaintenanceReport::default();
        for t in topics.values() {
            let c = &t.info.config;
            if !c.cleanup_policy.delete {
                continue;
            }
            for p in &t.partitions {
                let mut p = p.lock().map_err(poisoned)?;
                let mut total: i64 = p.batches.iter().map(|(_, b)| b.len() as i64).sum();
                let mut drop = 0;
                for (h, b) in p.batches.iter().take(p.batches.len().saturating_sub(1)) {
                    let by_time = c.retention_ms >= 0 && now - h.max_timestamp > c.retention_ms;
                    let by_size =
                        c.retention_bytes >= 0 && total - b.len() as i64 >= c.retention_bytes;
                    if !(by_time || by_size) {
                        break;
                    }
                    total -= b.len() as i64;
                    drop += 1;
                }
                if drop > 0 {
                    p.batches.drain(..drop);
                    p.log_start = p
                        .batches
                        .first()
                        .map(|(h, _)| h.base_offset)
                        .unwrap_or(p.next);
                    report.segments_deleted += drop;
                }
            }
        }
        Ok(report)
    }

    fn close(&self) -> Result<(), LogError> {
        Ok(())
    }
}
