//! Per-topic configuration with broker-wide defaults, named as in Kafka.
//!
//! A topic stores only the keys that were set for it (`overrides`); every other key reads the
//! broker default. Unknown keys and bad values are refused with an error naming the key.

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
                other => {
                    return Err(format!(
                        "unknown cleanup policy {other:?} (expected delete, compact or both)"
                    ));
                }
            }
        }
        if !p.delete && !p.compact {
            return Err("cleanup.policy must name delete, compact or both".into());
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

/// The effective configuration of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// `cleanup.policy`: delete old segments, compact by key, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: closed segments whose newest record is older than this are deleted; -1 keeps all.
    pub retention_ms: i64,
    /// `retention.bytes`: oldest segments are deleted while the partition is larger; -1 keeps all.
    pub retention_bytes: i64,
    /// `segment.bytes`: a segment rolls when the next batch would grow it past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: a non-empty segment older than this rolls at the next append.
    pub segment_ms: i64,
    /// `delete.retention.ms`: how long a tombstone survives compaction (by record timestamp).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is compacted only when its newest record is this old.
    pub min_compaction_lag_ms: i64,
    /// `max.message.bytes`: the largest record batch the topic accepts.
    pub max_message_bytes: u64,
    /// `index.interval.bytes`: bytes between two entries of the offset and time indexes.
    pub index_interval_bytes: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
        }
    }
}

/// Every key a topic accepts, for DescribeConfigs and validation.
pub const TOPIC_KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.message.bytes",
    "index.interval.bytes",
    "message.timestamp.type",
];

impl TopicConfig {
    /// Applies `overrides` on top of `self` (the broker defaults), checking every key and value.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, LogError> {
        let mut c = *self;
        for (k, v) in overrides {
            c.set(k, v).map_err(|reason| LogError::InvalidConfig {
                key: k.clone(),
                reason,
            })?;
        }
        Ok(c)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn int(v: &str, min: i64) -> Result<i64, String> {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not an integer"))?;
            if n < min {
                return Err(format!("{n} is below the minimum {min}"));
            }
            Ok(n)
        }
        match key {
            "cleanup.policy" => self.cleanup_policy = CleanupPolicy::parse(value)?,
            "retention.ms" => self.retention_ms = int(value, -1)?,
            "retention.bytes" => self.retention_bytes = int(value, -1)?,
            "segment.bytes" => self.segment_bytes = int(value, 1024)? as u64,
            "segment.ms" => self.segment_ms = int(value, 1)?,
            "delete.retention.ms" => self.delete_retention_ms = int(value, 0)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(value, 0)?,
            "max.message.bytes" => self.max_message_bytes = int(value, 0)? as u64,
            "index.interval.bytes" => self.index_interval_bytes = int(value, 0)? as u64,
            "message.timestamp.type" => {
                if value != "CreateTime" {
                    return Err("only CreateTime is supported".into());
                }
            }
            _ => return Err("unknown topic config".into()),
        }
        Ok(())
    }

    /// The value of `key` rendered as Kafka renders it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.render(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".into(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err.contains("retention.mss"), "{err}");
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "12".to_string());
        assert!(
            base.with_overrides(&o)
                .unwrap_err()
                .to_string()
                .contains("minimum")
        );
    }
}
