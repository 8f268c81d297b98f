//! The on-disk engine: a directory of topics, each a directory of partition directories.
//!
//! ```text
//! <dir>/.lock                      held (flock) while a broker uses the directory
//! <dir>/.clean-shutdown            present only between a clean close and the next open
//! <dir>/broker-config.json         dynamic broker-level defaults (AlterConfigs on the broker)
//! <dir>/topics/<topic>/topic.json  id, partition count, config overrides
//! <dir>/topics/<topic>/<p>/        segments: <base offset>.log / .index / .timeindex
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::partition::Partition;
use crate::{
    AppendInfo, BrokerOverrides, LogError, MaintenanceReport, PartitionOffsets, ReadResult,
    Storage, TopicConfig, TopicInfo, now_ms, validate_topic_name,
};

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlushMode {
    /// Leave it to the OS (plus the topics' `flush.messages` / `flush.ms`). Survives a process
    /// crash, not a power loss.
    #[default]
    None,
    /// Every produce waits for an fsync; concurrent produces share one (group commit).
    Batch,
}

/// Options of the disk engine.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub dir: PathBuf,
    /// Defaults every topic inherits (before dynamic broker-level overrides).
    pub defaults: TopicConfig,
    pub flush: FlushMode,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    id: uuid::Uuid,
    partitions: u32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Topic {
    name: String,
    dir: PathBuf,
    id: uuid::Uuid,
    /// (overrides, effective config), replaced together by AlterConfigs.
    config: RwLock<(BTreeMap<String, String>, Arc<TopicConfig>)>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

/// The disk storage engine.
#[derive(Debug)]
pub struct DiskStorage {
    opts: LogOptions,
    static_defaults: Arc<TopicConfig>,
    /// Dynamic broker-level overrides and the defaults they give (static + overrides).
    broker: RwLock<(BrokerOverrides, Arc<TopicConfig>)>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    _lock: File,
}

fn poisoned<T>(_: T) -> LogError {
    LogError::Io(std::io::Error::other("storage lock poisoned"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl Topic {
    fn cfg(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .map(|c| c.1.clone())
            .unwrap_or_else(|e| e.into_inner().1.clone())
    }
}

const BROKER_CONFIG_FILE: &str = "broker-config.json";

impl DiskStorage {
    /// Opens the data directory, running crash recovery if the last shutdown was not clean.
    pub fn open(opts: LogOptions) -> Result<DiskStorage, LogError> {
        std::fs::create_dir_all(opts.dir.join("topics"))?;
        let lock = File::create(opts.dir.join(".lock"))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Io(std::io::Error::other(format!(
                "data directory {} is in use by another process",
                opts.dir.display()
            ))));
        }
        let marker = opts.dir.join(".clean-shutdown");
        let clean = marker.exists();
        if clean {
            std::fs::remove_file(&marker)?;
            File::open(&opts.dir)?.sync_all()?;
        }
        let recover = !clean;
        let started = std::time::Instant::now();
        let broker_overrides: BrokerOverrides =
            match std::fs::read(opts.dir.join(BROKER_CONFIG_FILE)) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                    LogError::Corrupt(format!(
                        "{}: {e}",
                        opts.dir.join(BROKER_CONFIG_FILE).display()
                    ))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BrokerOverrides::default(),
                Err(e) => return Err(e.into()),
            };
        let defaults = broker_overrides.apply(&opts.defaults)?;
        let mut topics = HashMap::new();
        let now = now_ms();
        for entry in std::fs::read_dir(opts.dir.join("topics"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let dir = entry.path();
            if name.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let meta_path = dir.join("topic.json");
            let meta: TopicMeta = match std::fs::read(&meta_path) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| LogError::Corrupt(format!("{}: {e}", meta_path.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(dir = %dir.display(), "topic directory without topic.json (interrupted create?); removing");
                    std::fs::remove_dir_all(&dir)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let config = Arc::new(defaults.with_overrides(&meta.configs)?);
            let mut parts = Vec::new();
            for p in 0..meta.partitions {
                parts.push(Arc::new(Partition::open(
                    &dir.join(p.to_string()),
                    recover,
                    &config,
                    now,
                )?));
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    dir,
                    id: meta.id,
                    config: RwLock::new((meta.configs, config)),
                    partitions: RwLock::new(parts),
                }),
            );
        }
        tracing::info!(
            dir = %opts.dir.display(),
            topics = topics.len(),
            recovered = recover,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log opened"
        );
        Ok(DiskStorage {
            static_defaults: Arc::new(opts.defaults.clone()),
            broker: RwLock::new((broker_overrides, Arc::new(defaults))),
            opts,
            topics: RwLock::new(topics),
            _lock: lock,
        })
    }

    fn topic_arc(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.topics
            .read()
            .map_err(poisoned)?
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string()))
    }

    fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<Topic>, Arc<Partition>), LogError> {
        let t = self.topic_arc(topic)?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.read().ok()?.get(i).cloned())
            .ok_or_else(|| LogError::UnknownTopicOrPartition(format!("{topic}-{partition}")))?;
        Ok((t, p))
    }

    fn info(t: &Topic) -> TopicInfo {
        TopicInfo {
            name: t.name.clone(),
            id: t.id,
            partitions: t.partitions.read().map(|p| p.len() as u32).unwrap_or(0),
            overrides: t.config.read().map(|c| c.0.clone()).unwrap_or_default(),
            config: t.cfg(),
        }
    }

    fn current_defaults(&self) -> Arc<TopicConfig> {
        self.broker
            .read()
            .map(|b| b.1.clone())
            .unwrap_or_else(|e| e.into_inner().1.clone())
    }

    fn all_partitions(&self) -> Vec<(Arc<Topic>, Arc<Partition>)> {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for t in topics {
            let parts = t.partitions.read().map(|p| p.clone()).unwrap_or_default();
            for p in parts {
                out.push((t.clone(), p));
            }
        }
        out
    }

    /// In batch mode readers see only what is fsynced: a consumer never reads a record that a
    /// power loss could take back, and the producer's ack and the data's visibility agree.
    fn durable_only(&self) -> bool {
        self.opts.flush == FlushMode::Batch
    }

    /// Size in bytes and segment count of one partition (for tests and tools).
    pub fn partition_stats(&self, topic: &str, partition: i32) -> Result<(u64, usize), LogError> {
        let (_, p) = self.partition(topic, partition)?;
        Ok((p.size_bytes(), p.segment_count()))
    }
}

impl Storage for DiskStorage {
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
        let dir = self.opts.dir.join("topics").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let now = now_ms();
        let mut parts = Vec::new();
        for p in 0..partitions {
            parts.push(Arc::new(Partition::open(
                &dir.join(p.to_string()),
                false,
                &config,
                now,
            )?));
        }
        let meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: overrides.clone(),
        };
        write_atomic(
            &dir.join("topic.json"),
            &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
        )?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            dir,
            id: meta.id,
            config: RwLock::new((overrides, config)),
            partitions: RwLock::new(parts),
        });
        let info = Self::info(&topic);
        topics.insert(name.to_string(), topic);
        tracing::info!(topic = name, partitions, "topic created");
        Ok(info)
    }

    fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let topic = self
            .topics
            .write()
            .map_err(poisoned)?
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string()))?;
        // Rename first so a crash mid-delete never leaves a half topic behind.
        let trash = self
            .opts
            .dir
            .join("topics")
            .join(format!(".deleted-{}-{}", name, topic.id));
        std::fs::rename(&topic.dir, &trash)?;
        std::fs::remove_dir_all(&trash)?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    fn create_partitions(&self, name: &str, total: u32) -> Result<(), LogError> {
        let t = self.topic_arc(name)?;
        let mut parts = t.partitions.write().map_err(poisoned)?;
        let current = parts.len() as u32;
        if total <= current || total > 10_000 {
            return Err(LogError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count must be larger (got {total})"
            )));
        }
        let now = now_ms();
        for p in current..total {
            parts.push(Arc::new(Partition::open(
                &t.dir.join(p.to_string()),
                false,
                &t.cfg(),
                now,
            )?));
        }
        let meta = TopicMeta {
            id: t.id,
            partitions: total,
            configs: t.config.read().map_err(poisoned)?.0.clone(),
        };
        write_atomic(
            &t.dir.join("topic.json"),
            &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
        )?;
        Ok(())
    }

    fn topics(&self) -> Vec<TopicInfo> {
        let mut v: Vec<TopicInfo> = self
            .topics
            .read()
            .map(|t| t.values().map(|t| Self::info(t)).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topic_arc(name).ok().map(|t| Self::info(&t))
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
        // Hold the lock across the write so that two alterations cannot interleave.
        let mut broker = self.broker.write().map_err(poisoned)?;
        write_atomic(
            &self.opts.dir.join(BROKER_CONFIG_FILE),
            &serde_json::to_vec_pretty(&overrides).map_err(std::io::Error::other)?,
        )?;
        let topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect();
        for t in topics {
            let mut c = t.config.write().map_err(poisoned)?;
            // Each key was validated on its own when set, so a new default cannot make a
            // topic's overrides invalid.
            c.1 = Arc::new(defaults.with_overrides(&c.0)?);
        }
        *broker = (overrides, defaults);
        tracing::info!("dynamic broker configs altered");
        Ok(())
    }

    fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError> {
        let t = self.topic_arc(name)?;
        let config = Arc::new(self.current_defaults().with_overrides(&overrides)?);
        let parts = t.partitions.read().map_err(poisoned)?.len() as u32;
        let meta = TopicMeta {
            id: t.id,
            partitions: parts,
            configs: overrides.clone(),
        };
        write_atomic(
            &t.dir.join("topic.json"),
            &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
        )?;
        *t.config.write().map_err(poisoned)? = (overrides, config);
        tracing::info!(topic = name, "topic config altered");
        Ok(Self::info(&t))
    }

    fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, LogError> {
        self.partition(topic, partition)?.1.delete_records(offset)
    }

    fn log_dir(&self) -> (String, Vec<(String, i32, u64)>) {
        let mut out: Vec<(String, i32, u64)> = Vec::new();
        let topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        for t in topics {
            let parts = t.partitions.read().map(|p| p.clone()).unwrap_or_default();
            for (i, p) in parts.iter().enumerate() {
                out.push((t.name.clone(), i as i32, p.size_bytes()));
            }
        }
        out.sort();
        (self.opts.dir.display().to_string(), out)
    }

    fn append(&self, topic: &str, partition: i32, records: &[u8]) -> Result<AppendInfo, LogError> {
        let (t, p) = self.partition(topic, partition)?;
        let mut info = p.append(records, &t.cfg(), now_ms(), (topic, partition))?;
        info.needs_sync |= self.opts.flush == FlushMode::Batch;
        info.visible = !self.durable_only();
        Ok(info)
    }

    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.partition(topic, partition)?
            .1
            .read(offset, max_bytes, min_one, self.durable_only())
    }

    fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError> {
        self.partition(topic, partition)?
            .1
            .offsets(self.durable_only())
    }

    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let (_, p) = self.partition(topic, partition)?;
        if ts == -3 {
            p.max_timestamp()
        } else {
            p.offset_for_timestamp(ts)
        }
    }

    fn sync_to(&self, topic: &str, partition: i32, up_to: i64) -> Result<(), LogError> {
        self.partition(topic, partition)?.1.sync_to(up_to)
    }

    fn flush_due(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut flushed = 0;
        for (t, p) in self.all_partitions() {
            flushed += usize::from(p.flush_if_due(&t.cfg(), now_ms)?);
        }
        Ok(flushed)
    }

    fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, LogError> {
        let mut report = MaintenanceReport::default();
        for (t, p) in self.all_partitions() {
            let cfg = t.cfg();
            report.records_compacted += p.compact(&cfg, now_ms)?;
            report.segments_deleted += p.enforce_retention(&cfg, now_ms)?;
        }
        Ok(report)
    }

    fn close(&self) -> Result<(), LogError> {
        for (_, p) in self.all_partitions() {
            p.close()?;
        }
        write_atomic(&self.opts.dir.join(".clean-shutdown"), b"")?;
        tracing::info!(dir = %self.opts.dir.display(), "log closed cleanly");
        Ok(())
    }
}
