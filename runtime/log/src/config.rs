//! Per-topic configuration with broker-wide defaults, named and validated as in Kafka.
//!
//! [`TOPIC_CONFIGS`] lists every topic config Kafka 3.x and 4.x document, each with its type,
//! its broker-level synonyms (the `log.*` keys a broker default is set with), how to parse and
//! render it, and whether Weir applies it or only accepts and reports it (replication and tiered
//! storage have no meaning on one node). A topic stores only the keys that were set for it
//! (`overrides`); every other key reads the broker default. Unknown keys and bad values are
//! refused with an error naming the key, as Kafka words it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LogError;

/// What happens to old data in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    fn parse(s: &str) -> Result<Self, String> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return Err("Invalid value; valid values are compact and delete".into()),
            }
        }
        if !p.delete && !p.compact {
            return Err("must name delete, compact or both".into());
        }
        Ok(p)
    }

    fn render(&self) -> String {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete".into(),
            (true, false) => "compact".into(),
            _ => "delete".into(),
        }
    }
}

/// `compression.type`: what the log stores, whatever the producer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    /// Keep each batch as the producer compressed it.
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    const NAMES: [(&'static str, CompressionType); 6] = [
        ("producer", CompressionType::Producer),
        ("uncompressed", CompressionType::Uncompressed),
        ("gzip", CompressionType::Gzip),
        ("snappy", CompressionType::Snappy),
        ("lz4", CompressionType::Lz4),
        ("zstd", CompressionType::Zstd),
    ];

    /// The record batch codec id it stores (0 none ... 4 zstd); `None` for `producer`.
    pub fn codec(self) -> Option<i16> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    #[default]
    CreateTime,
    /// The broker stamps each batch with the time it appended it.
    LogAppendTime,
}

/// The type of a config as DescribeConfigs reports it (`config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// The effective configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `cleanup.policy`: delete old segments, compact by key, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`: recompress on append to this codec, or keep the producer's.
    pub compression: CompressionType,
    /// `compression.gzip.level` (-1: the codec's default).
    pub gzip_level: i32,
    /// `compression.lz4.level`.
    pub lz4_level: i32,
    /// `compression.zstd.level`.
    pub zstd_level: i32,
    /// `delete.retention.ms`: how long a tombstone survives compaction (by record timestamp).
    pub delete_retention_ms: i64,
    /// `file.delete.delay.ms`: accepted and reported; Weir deletes a segment at once (readers
    /// keep their open handles, so nobody is cut off).
    pub file_delete_delay_ms: i64,
    /// `flush.messages`: fsync a partition once this many messages are unflushed.
    pub flush_messages: i64,
    /// `flush.ms`: fsync a partition whose oldest unflushed data is this old.
    pub flush_ms: i64,
    /// `follower.replication.throttled.replicas`: replication; reported only.
    pub follower_throttled_replicas: String,
    /// `index.interval.bytes`: bytes between two entries of the offset and time indexes.
    pub index_interval_bytes: u64,
    /// `leader.replication.throttled.replicas`: replication; reported only.
    pub leader_throttled_replicas: String,
    /// `local.retention.bytes`: tiered storage; reported only.
    pub local_retention_bytes: i64,
    /// `local.retention.ms`: tiered storage; reported only.
    pub local_retention_ms: i64,
    /// `max.compaction.lag.ms`: uncompacted data older than this is compacted whatever the
    /// dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `max.message.bytes`: the largest record batch the topic accepts (after recompression).
    pub max_message_bytes: u64,
    /// `message.downconversion.enable`: reported only (Weir serves v2 batches only).
    pub message_downconversion_enable: bool,
    /// `message.format.version`: deprecated by Kafka; reported only (Weir stores v2 batches).
    pub message_format_version: String,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime timestamp may be.
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime timestamp may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.difference.max.ms`: both of the above, where they are not set.
    pub timestamp_difference_max_ms: i64,
    /// `message.timestamp.type`: CreateTime or LogAppendTime.
    pub timestamp_type: TimestampType,
    /// `min.cleanable.dirty.ratio`: compact once this share of the closed log is uncompacted.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment is compacted only when its newest record is this old.
    pub min_compaction_lag_ms: i64,
    /// `min.insync.replicas`: replication; reported only (the one broker is the whole ISR).
    pub min_insync_replicas: i32,
    /// `preallocate`: allocate the active segment ahead of writes (in 8 MiB steps), so that an
    /// fsync writes data only, never the file's size.
    pub preallocate: bool,
    /// `remote.storage.enable`: tiered storage is not available, so only `false` is accepted.
    pub remote_storage_enable: bool,
    /// `remote.log.copy.disable`: tiered storage; reported only.
    pub remote_log_copy_disable: bool,
    /// `remote.log.delete.on.disable`: tiered storage; reported only.
    pub remote_log_delete_on_disable: bool,
    /// `retention.bytes`: oldest segments are deleted while the partition is larger; -1 keeps all.
    pub retention_bytes: i64,
    /// `retention.ms`: closed segments whose newest record is older than this are deleted; -1
    /// keeps all.
    pub retention_ms: i64,
    /// `segment.bytes`: a segment rolls when the next batch would grow it past this size.
    pub segment_bytes: u64,
    /// `segment.index.bytes`: a segment rolls when its offset or time index would grow past this.
    pub segment_index_bytes: u64,
    /// `segment.jitter.ms`: each segment rolls up to this much before `segment.ms`.
    pub segment_jitter_ms: i64,
    /// `segment.ms`: a non-empty segment older than this rolls at the next append.
    pub segment_ms: i64,
    /// `unclean.leader.election.enable`: replication; reported only.
    pub unclean_leader_election_enable: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            compression: CompressionType::Producer,
            gzip_level: -1,
            lz4_level: 9,
            zstd_level: 3,
            delete_retention_ms: 24 * 3600 * 1000,
            file_delete_delay_ms: 60_000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            follower_throttled_replicas: String::new(),
            index_interval_bytes: 4096,
            leader_throttled_replicas: String::new(),
            local_retention_bytes: -2,
            local_retention_ms: -2,
            max_compaction_lag_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_downconversion_enable: true,
            message_format_version: "3.0-IV1".into(),
            timestamp_after_max_ms: i64::MAX,
            timestamp_before_max_ms: i64::MAX,
            timestamp_difference_max_ms: i64::MAX,
            timestamp_type: TimestampType::CreateTime,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            min_insync_replicas: 1,
            preallocate: false,
            remote_storage_enable: false,
            remote_log_copy_disable: false,
            remote_log_delete_on_disable: false,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            segment_bytes: 1 << 30,
            segment_index_bytes: 10 * 1024 * 1024,
            segment_jitter_ms: 0,
            segment_ms: 7 * 24 * 3600 * 1000,
            unclean_leader_election_enable: false,
        }
    }
}

/// One topic config: its name, type, broker synonyms, and how it is parsed and rendered.
#[derive(Debug)]
pub struct ConfigDef {
    /// The topic config name (`retention.ms`).
    pub name: &'static str,
    pub ty: ConfigType,
    /// Broker configs that set this key's default, in Kafka's order of precedence. The first
    /// is the one a dynamic broker config sets (`log.retention.ms`; `log.retention.hours` only
    /// in a static config).
    pub synonyms: &'static [&'static str],
    /// Whether Weir acts on it; `false` for what is about replication or tiered storage, which
    /// is accepted, validated and reported so that tools and configs written for Kafka work.
    pub applied: bool,
    /// One line for DescribeConfigs' documentation.
    pub doc: &'static str,
    set: fn(&mut TopicConfig, &str) -> Result<(), String>,
    get: fn(&TopicConfig) -> String,
}

fn long(v: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| "Expected value to be a 64-bit integer (long), but it was not".to_string())?;
    check_range(n, min, max)
}

fn int(v: &str, min: i64, max: i64) -> Result<i32, String> {
    let n: i32 = v
        .trim()
        .parse()
        .map_err(|_| "Expected value to be a 32-bit integer, but it was not".to_string())?;
    check_range(i64::from(n), min, max).map(|n| n as i32)
}

fn check_range(n: i64, min: i64, max: i64) -> Result<i64, String> {
    if n < min {
        return Err(format!("Value must be at least {min}"));
    }
    if n > max {
        return Err(format!("Value must be no more than {max}"));
    }
    Ok(n)
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("Expected value to be either true or false".into()),
    }
}

/// `*` or a comma separated list of `partition:broker` pairs.
fn throttled_replicas(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v == "*"
        || v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .all(|p| {
                p.split_once(':').is_some_and(|(a, b)| {
                    a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            });
    if ok {
        Ok(v.to_string())
    } else {
        Err("must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...".into())
    }
}

/// A Kafka release or inter-broker protocol version such as `2.8`, `0.10.0-IV1`, `3.0-IV1`.
fn message_format_version(v: &str) -> Result<String, String> {
    let v = v.trim();
    let (num, iv) = match v.split_once("-IV") {
        Some((n, iv)) => (n, Some(iv)),
        None => (v, None),
    };
    let parts: Vec<&str> = num.split('.').collect();
    let ok = (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && iv.is_none_or(|iv| !iv.is_empty() && iv.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(v.to_string())
    } else {
        Err("Version must be a Kafka release such as 2.8 or 3.0-IV1".into())
    }
}

fn yes_no(b: bool) -> String {
    b.to_string()
}

const MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

macro_rules! def {
    ($name:literal, $ty:ident, [$($syn:literal),*], $applied:literal, $doc:literal,
     |$c:ident, $v:ident| $set:expr, |$g:ident| $get:expr) => {
        ConfigDef {
            name: $name,
            ty: ConfigType::$ty,
            synonyms: &[$($syn),*],
            applied: $applied,
            doc: $doc,
            set: |$c: &mut TopicConfig, $v: &str| {
                $set;
                Ok(())
            },
            get: |$g: &TopicConfig| $get,
        }
    };
}

/// Every topic config Kafka 3.x and 4.x document, sorted by name.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        ["log.cleanup.policy"],
        true,
        "delete old segments, compact to the latest record per key, or both",
        |c, v| c.cleanup_policy = CleanupPolicy::parse(v)?,
        |c| c.cleanup_policy.render()
    ),
    def!(
        "compression.gzip.level",
        Int,
        ["compression.gzip.level"],
        true,
        "gzip level when compression.type is gzip (-1: the codec's default)",
        |c, v| c.gzip_level = {
            let n = int(v, -1, 9)?;
            if n == 0 {
                return Err("Value must be -1 or between 1 and 9".into());
            }
            n
        },
        |c| c.gzip_level.to_string()
    ),
    def!(
        "compression.lz4.level",
        Int,
        ["compression.lz4.level"],
        true,
        "lz4 level when compression.type is lz4",
        |c, v| c.lz4_level = int(v, 1, 17)?,
        |c| c.lz4_level.to_string()
    ),
    def!(
        "compression.type",
        String,
        ["compression.type"],
        true,
        "the codec the log stores: producer keeps what was sent, any other recompresses on append",
        |c, v| c.compression = CompressionType::NAMES
            .iter()
            .find(|(n, _)| *n == v.trim())
            .map(|(_, t)| *t)
            .ok_or("String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer")?,
        |c| CompressionType::NAMES
            .iter()
            .find(|(_, t)| *t == c.compression)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    ),
    def!(
        "compression.zstd.level",
        Int,
        ["compression.zstd.level"],
        true,
        "zstd level when compression.type is zstd",
        |c, v| c.zstd_level = int(v, -131_072, 22)?,
        |c| c.zstd_level.to_string()
    ),
    def!(
        "delete.retention.ms",
        Long,
        ["log.cleaner.delete.retention.ms"],
        true,
        "how long a tombstone survives compaction",
        |c, v| c.delete_retention_ms = long(v, 0, MAX)?,
        |c| c.delete_retention_ms.to_string()
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        ["log.segment.delete.delay.ms"],
        false,
        "accepted; Weir deletes segment files at once (open readers keep their handles)",
        |c, v| c.file_delete_delay_ms = long(v, 0, MAX)?,
        |c| c.file_delete_delay_ms.to_string()
    ),
    def!(
        "flush.messages",
        Long,
        ["log.flush.interval.messages"],
        true,
        "fsync a partition once this many messages are unflushed",
        |c, v| c.flush_messages = long(v, 1, MAX)?,
        |c| c.flush_messages.to_string()
    ),
    def!(
        "flush.ms",
        Long,
        ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        true,
        "fsync a partition whose oldest unflushed data is this old",
        |c, v| c.flush_ms = long(v, 0, MAX)?,
        |c| c.flush_ms.to_string()
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        [],
        false,
        "replication throttling; accepted and reported (one broker)",
        |c, v| c.follower_throttled_replicas = throttled_replicas(v)?,
        |c| c.follower_throttled_replicas.clone()
    ),
    def!(
        "index.interval.bytes",
        Int,
        ["log.index.interval.bytes"],
        true,
        "bytes between two entries of the offset and time indexes",
        |c, v| c.index_interval_bytes = int(v, 0, INT_MAX)? as u64,
        |c| c.index_interval_bytes.to_string()
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        [],
        false,
        "replication throttling; accepted and reported (one broker)",
        |c, v| c.leader_throttled_replicas = throttled_replicas(v)?,
        |c| c.leader_throttled_replicas.clone()
    ),
    def!(
        "local.retention.bytes",
        Long,
        ["log.local.retention.bytes"],
        false,
        "tiered storage; accepted and reported (no remote tier)",
        |c, v| c.local_retention_bytes = long(v, -2, MAX)?,
        |c| c.local_retention_bytes.to_string()
    ),
    def!(
        "local.retention.ms",
        Long,
        ["log.local.retention.ms"],
        false,
        "tiered storage; accepted and reported (no remote tier)",
        |c, v| c.local_retention_ms = long(v, -2, MAX)?,
        |c| c.local_retention_ms.to_string()
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        ["log.cleaner.max.compaction.lag.ms"],
        true,
        "uncompacted data older than this is compacted whatever the dirty ratio",
        |c, v| c.max_compaction_lag_ms = long(v, 1, MAX)?,
        |c| c.max_compaction_lag_ms.to_string()
    ),
    def!(
        "max.message.bytes",
        Int,
        ["message.max.bytes"],
        true,
        "the largest record batch the topic accepts",
        |c, v| c.max_message_bytes = int(v, 0, INT_MAX)? as u64,
        |c| c.max_message_bytes.to_string()
    ),
    def!(
        "message.downconversion.enable",
        Boolean,
        ["log.message.downconversion.enable"],
        false,
        "accepted and reported; Weir serves v2 record batches only",
        |c, v| c.message_downconversion_enable = boolean(v)?,
        |c| yes_no(c.message_downconversion_enable)
    ),
    def!(
        "message.format.version",
        String,
        ["log.message.format.version"],
        false,
        "deprecated by Kafka; accepted and reported (Weir stores v2 record batches)",
        |c, v| c.message_format_version = message_format_version(v)?,
        |c| c.message_format_version.clone()
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        ["log.message.timestamp.after.max.ms"],
        true,
        "how far ahead of the broker's clock a CreateTime timestamp may be",
        |c, v| c.timestamp_after_max_ms = long(v, 0, MAX)?,
        |c| c.timestamp_after_max_ms.to_string()
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        ["log.message.timestamp.before.max.ms"],
        true,
        "how far behind the broker's clock a CreateTime timestamp may be",
        |c, v| c.timestamp_before_max_ms = long(v, 0, MAX)?,
        |c| c.timestamp_before_max_ms.to_string()
    ),
    def!(
        "message.timestamp.difference.max.ms",
        Long,
        ["log.message.timestamp.difference.max.ms"],
        true,
        "deprecated: the before and after limits where those are not set",
        |c, v| c.timestamp_difference_max_ms = long(v, 0, MAX)?,
        |c| c.timestamp_difference_max_ms.to_string()
    ),
    def!(
        "message.timestamp.type",
        String,
        ["log.message.timestamp.type"],
        true,
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch on append",
        |c, v| c.timestamp_type = match v.trim() {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => return Err("String must be one of: CreateTime, LogAppendTime".into()),
        },
        |c| match c.timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        }
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        ["log.cleaner.min.cleanable.ratio"],
        true,
        "compact once this share of the closed log has not been compacted",
        |c, v| c.min_cleanable_dirty_ratio = {
            let r: f64 = v
                .trim()
                .parse()
                .map_err(|_| "Expected value to be a double, but it was not".to_string())?;
            if !(0.0..=1.0).contains(&r) {
                return Err("Value must be between 0 and 1".into());
            }
            r
        },
        |c| c.min_cleanable_dirty_ratio.to_string()
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        ["log.cleaner.min.compaction.lag.ms"],
        true,
        "a record stays uncompacted at least this long",
        |c, v| c.min_compaction_lag_ms = long(v, 0, MAX)?,
        |c| c.min_compaction_lag_ms.to_string()
    ),
    def!(
        "min.insync.replicas",
        Int,
        ["min.insync.replicas"],
        false,
        "replication; accepted and reported (the one broker is the whole ISR)",
        |c, v| c.min_insync_replicas = int(v, 1, INT_MAX)?,
        |c| c.min_insync_replicas.to_string()
    ),
    def!(
        "preallocate",
        Boolean,
        ["log.preallocate"],
        true,
        "allocate the active segment ahead of writes (8 MiB steps): an fsync then writes data only",
        |c, v| c.preallocate = boolean(v)?,
        |c| yes_no(c.preallocate)
    ),
    def!(
        "remote.log.copy.disable",
        Boolean,
        [],
        false,
        "tiered storage; accepted and reported (no remote tier)",
        |c, v| c.remote_log_copy_disable = boolean(v)?,
        |c| yes_no(c.remote_log_copy_disable)
    ),
    def!(
        "remote.log.delete.on.disable",
        Boolean,
        [],
        false,
        "tiered storage; accepted and reported (no remote tier)",
        |c, v| c.remote_log_delete_on_disable = boolean(v)?,
        |c| yes_no(c.remote_log_delete_on_disable)
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        [],
        false,
        "tiered storage is not available: only false is accepted",
        |c, v| {
            c.remote_storage_enable = match boolean(v)? {
            true => return Err("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.".into()),
            false => false,
        }
        },
        |c| yes_no(c.remote_storage_enable)
    ),
    def!(
        "retention.bytes",
        Long,
        ["log.retention.bytes"],
        true,
        "oldest segments are deleted while a partition is larger; -1 keeps all",
        |c, v| c.retention_bytes = long(v, i64::MIN, MAX)?,
        |c| c.retention_bytes.to_string()
    ),
    def!(
        "retention.ms",
        Long,
        [
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours"
        ],
        true,
        "closed segments older than this are deleted; -1 keeps all",
        |c, v| c.retention_ms = long(v, -1, MAX)?,
        |c| c.retention_ms.to_string()
    ),
    def!(
        "segment.bytes",
        Int,
        ["log.segment.bytes"],
        true,
        "a segment rolls when it would grow past this size",
        |c, v| c.segment_bytes = int(v, 14, INT_MAX)? as u64,
        |c| c.segment_bytes.to_string()
    ),
    def!(
        "segment.index.bytes",
        Int,
        ["log.index.size.max.bytes"],
        true,
        "a segment rolls when its offset or time index would grow past this size",
        |c, v| c.segment_index_bytes = int(v, 4, INT_MAX)? as u64,
        |c| c.segment_index_bytes.to_string()
    ),
    def!(
        "segment.jitter.ms",
        Long,
        ["log.roll.jitter.ms", "log.roll.jitter.hours"],
        true,
        "each segment rolls up to this much before segment.ms, so partitions do not roll together",
        |c, v| c.segment_jitter_ms = long(v, 0, MAX)?,
        |c| c.segment_jitter_ms.to_string()
    ),
    def!(
        "segment.ms",
        Long,
        ["log.roll.ms", "log.roll.hours"],
        true,
        "a non-empty segment older than this rolls at the next append",
        |c, v| c.segment_ms = long(v, 1, MAX)?,
        |c| c.segment_ms.to_string()
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        ["unclean.leader.election.enable"],
        false,
        "replication; accepted and reported (one broker)",
        |c, v| c.unclean_leader_election_enable = boolean(v)?,
        |c| yes_no(c.unclean_leader_election_enable)
    ),
];

/// Broker-level defaults set at run time (AlterConfigs on a BROKER resource), by topic config
/// name, in the topic config's units. Persisted by the storage engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerOverrides {
    /// Set on the cluster-wide default resource (resource name "").
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    /// Set on this broker's own resource (its node id); wins over `cluster`.
    #[serde(default)]
    pub node: BTreeMap<String, String>,
}

impl BrokerOverrides {
    /// The defaults topics inherit: the static ones, then the cluster-wide, then this broker's.
    pub fn apply(&self, static_defaults: &TopicConfig) -> Result<TopicConfig, LogError> {
        static_defaults
            .with_overrides(&self.cluster)?
            .with_overrides(&self.node)
    }
}

/// The definition of a topic config, if Kafka has one by that name.
pub fn topic_config(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The topic config a broker config sets the default of (`log.retention.hours` and
/// `log.retention.ms` → `retention.ms`).
pub fn topic_config_for_broker_key(broker_key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|d| d.synonyms.contains(&broker_key))
}

impl TopicConfig {
    /// Applies `overrides` on top of `self` (the broker defaults), checking every key and value.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, LogError> {
        let mut c = self.clone();
        for (k, v) in overrides {
            c.set(k, v)?;
        }
        Ok(c)
    }

    /// Sets one key, refusing unknown keys and bad values with Kafka's wording.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LogError> {
        let def = topic_config(key).ok_or_else(|| LogError::UnknownConfig(key.to_string()))?;
        (def.set)(self, value).map_err(|reason| LogError::InvalidConfig {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        })
    }

    /// The value of `key` rendered as Kafka renders it.
    pub fn get(&self, key: &str) -> Option<String> {
        topic_config(key).map(|d| (d.get)(self))
    }

    /// The oldest a CreateTime timestamp may be, in ms before now (`i64::MAX`: unbounded).
    pub fn timestamp_before_limit(&self) -> i64 {
        if self.timestamp_before_max_ms != i64::MAX {
            self.timestamp_before_max_ms
        } else {
            self.timestamp_difference_max_ms
        }
    }

    /// The furthest a CreateTime timestamp may be ahead of now, in ms (`i64::MAX`: unbounded).
    pub fn timestamp_after_limit(&self) -> i64 {
        if self.timestamp_after_max_ms != i64::MAX {
            self.timestamp_after_max_ms
        } else {
            self.timestamp_difference_max_ms
        }
    }

    /// Whether an append must look at every record (key and timestamp checks).
    pub fn validates_records(&self) -> bool {
        self.cleanup_policy.compact
            || (self.timestamp_type == TimestampType::CreateTime
                && (self.timestamp_before_limit() != i64::MAX
                    || self.timestamp_after_limit() != i64::MAX))
    }

    /// The level to compress with for codec id `codec` (`None`: the codec's default).
    pub fn compression_level(&self, codec: i16) -> Option<i32> {
        match codec {
            1 if self.gzip_level >= 0 => Some(self.gzip_level),
            3 => Some(self.lz4_level),
            4 => Some(self.zstd_level),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn overrides_apply_and_bad_keys_are_named() {
        let base = TopicConfig::default();
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        o.insert("retention.ms".to_string(), "1000".to_string());
        let c = base.with_overrides(&o).unwrap();
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        assert_eq!(c.get("retention.ms").unwrap(), "1000");
        o.insert("retention.mss".to_string(), "1".to_string());
        let err = base.with_overrides(&o).unwrap_err().to_string();
        assert_eq!(err, "Unknown topic config name: retention.mss");
        let err = base
            .with_overrides(&one("segment.bytes", "12"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Invalid value 12 for configuration segment.bytes: Value must be at least 14"
        );
    }

    #[test]
    fn every_documented_key_round_trips_its_default() {
        let d = TopicConfig::default();
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "TOPIC_CONFIGS is sorted by name");
        for def in TOPIC_CONFIGS {
            let v = d.get(def.name).unwrap();
            let again = d.with_overrides(&one(def.name, &v)).unwrap();
            assert_eq!(again, d, "{} = {v:?} does not round-trip", def.name);
        }
        // Kafka 3.9 documents 36 topic configs (4.0 drops three deprecated ones, kept here).
        assert_eq!(TOPIC_CONFIGS.len(), 36);
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let d = TopicConfig::default();
        let bad = [
            ("min.insync.replicas", "0"),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("compression.zstd.level", "23"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("message.timestamp.type", "Later"),
            ("preallocate", "yes"),
            ("remote.storage.enable", "true"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("message.format.version", "banana"),
            ("max.compaction.lag.ms", "0"),
        ];
        for (k, v) in bad {
            let err = d.with_overrides(&one(k, v)).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
        let good = [
            ("compression.type", "zstd"),
            ("compression.gzip.level", "-1"),
            ("min.insync.replicas", "2"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("preallocate", "TRUE"),
            ("leader.replication.throttled.replicas", "0:1, 1:1"),
            ("follower.replication.throttled.replicas", "*"),
            ("message.format.version", "0.10.0-IV1"),
            ("message.format.version", "2.8"),
            ("remote.storage.enable", "false"),
        ];
        for (k, v) in good {
            d.with_overrides(&one(k, v))
                .unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    #[test]
    fn timestamp_limits_fall_back_to_the_difference() {
        let c = TopicConfig::default()
            .with_overrides(&one("message.timestamp.difference.max.ms", "100"))
            .unwrap();
        assert_eq!(
            (c.timestamp_before_limit(), c.timestamp_after_limit()),
            (100, 100)
        );
        let c = c
            .with_overrides(&one("message.timestamp.after.max.ms", "5"))
            .unwrap();
        assert_eq!(
            (c.timestamp_before_limit(), c.timestamp_after_limit()),
            (100, 5)
        );
        assert!(c.validates_records());
        assert!(!TopicConfig::default().validates_records());
    }

    #[test]
    fn broker_synonyms_name_their_topic_key_and_unit() {
        let d = topic_config_for_broker_key("log.retention.hours").unwrap();
        assert_eq!(d.name, "retention.ms");
        assert_eq!(d.synonyms[0], "log.retention.ms");
        let d = topic_config_for_broker_key("message.max.bytes").unwrap();
        assert_eq!(d.name, "max.message.bytes");
        assert!(topic_config_for_broker_key("node.id").is_none());
    }
}
