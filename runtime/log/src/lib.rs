//! `weir-log`: Weir's storage engine.
//!
//! A topic has N partitions; a partition is a directory of segment files holding Kafka v2 record
//! batches exactly as producers sent them (only the base offset is rewritten), each with a
//! sparse offset index and time index. This crate owns durability, crash recovery, retention and
//! compaction. It has no network code and knows nothing of the Kafka request/response protocol
//! beyond the record batch format.
//!
//! Everything goes through the [`Storage`] trait, implemented by [`DiskStorage`] (the real
//! engine) and [`MemoryStorage`] (for tests of the layers above).
//!
//! Invariants (see ARCHITECTURE.md):
//! - offsets within a partition are assigned densely at append; recovery never produces a
//!   duplicate or a hole (compaction may later remove records, leaving holes by design);
//! - a reader never sees a partially written batch;
//! - an append returns only after the batches are written to the segment file (page cache);
//!   [`Storage::sync_to`] returns only after they are on stable storage.

pub mod batch;
mod codec;
pub mod config;
mod disk;
mod memory;
mod partition;
mod producers;
pub mod raw;
mod segment;
#[doc(hidden)]
pub mod testing;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

pub use config::{
    BrokerOverrides, CleanupPolicy, CompressionType, ConfigDef, ConfigType, TOPIC_CONFIGS,
    TimestampType, TopicConfig, topic_config, topic_config_for_broker_key,
};
pub use disk::{DiskStorage, FlushMode, LogOptions};
pub use memory::MemoryStorage;

/// Errors of the storage engine. Each maps to one Kafka error code in the broker.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },
    #[error("Unknown topic config name: {0}")]
    UnknownConfig(String),
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records of a batch broke a topic rule (a null key on a compacted topic, a timestamp out
    /// of bounds): nothing of the request's partition was appended.
    #[error("{message}")]
    RecordsRejected {
        kind: RejectKind,
        message: String,
        /// (index of the record in its batch, why).
        records: Vec<(i32, String)>,
    },
    #[error("record batch magic {0} is not supported (only v2 batches are)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u64 },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("log data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why records were rejected, for the error code the broker answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// INVALID_RECORD: e.g. a record without a key on a compacted topic.
    InvalidRecord,
    /// INVALID_TIMESTAMP: a CreateTime timestamp outside the topic's bounds.
    InvalidTimestamp,
}

/// A topic as the storage engine knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: u32,
    /// Keys set explicitly for this topic.
    pub overrides: BTreeMap<String, String>,
    /// Effective configuration (defaults plus overrides).
    pub config: Arc<TopicConfig>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// The flush policy asks the caller to wait for [`Storage::sync_to`] before acknowledging.
    pub needs_sync: bool,
    /// Readers can see the records now; `false` when they become visible only once fsynced
    /// (flush = batch), so that waking waiting readers before then is wasted work.
    pub visible: bool,
    /// An idempotent producer's retry of a batch already in the log: nothing was appended and
    /// the offsets are those of the original.
    pub duplicate: bool,
    /// The time the batches were stamped with on a LogAppendTime topic, else -1.
    pub log_append_time_ms: i64,
}

/// First and one-past-last offsets of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub log_end: i64,
}

/// Whole record batches read from a partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// What a maintenance pass (retention and compaction) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub segments_deleted: usize,
    pub records_compacted: usize,
}

/// The storage engine's interface. All methods are blocking; callers on an async runtime run
/// the slow ones ([`Storage::sync_to`], [`Storage::maintain`]) on a blocking thread.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a topic. `overrides` are validated against [`TOPIC_CONFIGS`].
    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError>;
    /// Deletes a topic and all its data.
    fn delete_topic(&self, name: &str) -> Result<(), LogError>;
    /// Grows a topic to `total` partitions.
    fn create_partitions(&self, name: &str, total: u32) -> Result<(), LogError>;
    /// Every topic, sorted by name.
    fn topics(&self) -> Vec<TopicInfo>;
    /// One topic.
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// Broker-wide defaults that topics inherit: the static ones with the dynamic overrides.
    fn defaults(&self) -> Arc<TopicConfig>;
    /// The defaults the engine was opened with (from the broker's configuration file).
    fn static_defaults(&self) -> Arc<TopicConfig>;
    /// The dynamic broker-level overrides of the defaults.
    fn broker_overrides(&self) -> BrokerOverrides;
    /// Replaces the dynamic overrides (validated, persisted); every topic without its own value
    /// for a key follows the new default at once.
    fn alter_broker_overrides(&self, overrides: BrokerOverrides) -> Result<(), LogError>;
    /// Replaces a topic's config overrides (validated; persisted).
    fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError>;
    /// Moves the log start offset forward to `offset` (DeleteRecords); -1 means the end.
    /// Returns the new log start offset.
    fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, LogError>;
    /// The data directory and the size in bytes of every partition.
    fn log_dir(&self) -> (String, Vec<(String, i32, u64)>);
    /// Validates and appends the record batches in `records`, assigning offsets.
    fn append(&self, topic: &str, partition: i32, records: &[u8]) -> Result<AppendInfo, LogError>;
    /// Reads whole batches from `offset`, at most `max_bytes` of them. With `min_one`, the first
    /// batch is returned even when it alone is larger (KIP-74: a fetch always makes progress);
    /// without it, a first batch that does not fit gives an empty read.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError>;
    /// Log start and end offsets.
    fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError>;
    /// The first record with timestamp >= `ts` as (offset, timestamp); `ts == -3` asks for the
    /// record with the largest timestamp.
    fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, LogError>;
    /// Blocks until every record before `up_to` is on stable storage (group commit).
    fn sync_to(&self, topic: &str, partition: i32, up_to: i64) -> Result<(), LogError>;
    /// Fsyncs partitions whose oldest unflushed data is older than their topic's `flush.ms`.
    /// Returns how many were fsynced.
    fn flush_due(&self, now_ms: i64) -> Result<usize, LogError>;
    /// Runs retention and compaction once.
    fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, LogError>;
    /// Flushes everything and marks a clean shutdown.
    fn close(&self) -> Result<(), LogError>;
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopic {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
