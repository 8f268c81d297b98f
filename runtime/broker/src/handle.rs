//! [`BrokerHandle`]: the broker's operations for code in the same process (the Connect
//! runtime, later the HTTP bridge), with exactly the semantics of the request handlers: an
//! append waits for the group-commit fsync its topic's flush policy asks for and wakes waiting
//! fetches; fetches long-poll; committed offsets are durable before the call returns. No socket
//! and no re-encoding: record batches go to and from the log as they are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use weir_log::{LogError, PartitionOffsets, ReadResult, TopicInfo};

use crate::Shared;
use crate::groups::{Committed, GroupState, code};

/// A cheap, cloneable handle on a bound broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// What a produce stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: i64,
    pub last_offset: i64,
}

impl BrokerHandle {
    /// The cluster id the broker reports.
    pub fn cluster_id(&self) -> &str {
        &self.shared.cfg.cluster_id
    }

    /// Appends Kafka v2 record batches to a partition; returns once they are stored as the
    /// topic's flush policy asks (fsynced when it says so), as an acks=all produce does.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batches: &[u8],
    ) -> Result<Produced, LogError> {
        if topic == crate::groups::OFFSETS_TOPIC {
            return Err(LogError::InvalidRecord(format!(
                "{topic} is written only by the group coordinator"
            )));
        }
        let info = self.shared.storage.append(topic, partition, batches)?;
        if info.visible {
            self.shared.appended.notify_waiters();
        }
        if info.needs_sync {
            let done = self
                .shared
                .syncer
                .request(topic, partition, info.last_offset + 1);
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(LogError::Io(std::io::Error::other(e))),
                Err(_) => {
                    return Err(LogError::Io(std::io::Error::other(
                        "the fsync thread has stopped",
                    )));
                }
            }
        }
        Ok(Produced {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
        })
    }

    /// Reads whole batches from `offset` (at most `max_bytes`, but always at least one batch),
    /// waiting up to `wait` for data when there is none yet.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<ReadResult, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let r = self
                .shared
                .storage
                .read(topic, partition, offset, max_bytes, true)?;
            if !r.records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(r);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.shared.storage.topics()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.shared.storage.topic(name)
    }

    /// Creates a topic (an error if it exists).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicInfo, LogError> {
        weir_log::validate_topic_name(name)?;
        let t = self
            .shared
            .storage
            .create_topic(name, partitions.max(1), overrides)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(t)
    }

    /// The topic, created as a client's first use would create it when auto-creation is on.
    pub fn ensure_topic(&self, name: &str) -> Result<TopicInfo, LogError> {
        weir_log::validate_topic_name(name)?;
        crate::metadata::get_or_create(&self.shared, name, true)
    }

    /// Log start and end offsets of a partition.
    pub fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError> {
        self.shared.storage.offsets(topic, partition)
    }

    /// A group's committed offsets.
    pub fn committed(&self, group: &str) -> BTreeMap<(String, i32), i64> {
        self.shared
            .groups
            .fetch_offsets(group)
            .into_iter()
            .map(|(k, c)| (k, c.offset))
            .collect()
    }

    /// Commits offsets for a group as a standalone (simple, unassigned) consumer does: refused
    /// while the group has members. Returns once the commit is durable.
    pub async fn commit(
        &self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), LogError> {
        let check = self.shared.groups.check_commit(group, -1, "", None);
        if check != code::NONE {
            return Err(LogError::InvalidRecord(format!(
                "group {group} has active members; its offsets cannot be committed from here (error {check})"
            )));
        }
        let now = weir_log::now_ms();
        let entries = offsets
            .iter()
            .map(|(t, p, o)| {
                (
                    t.clone(),
                    *p,
                    Committed {
                        offset: *o,
                        leader_epoch: -1,
                        metadata: String::new(),
                        commit_ms: now,
                    },
                )
            })
            .collect();
        let written = self.shared.groups.commit(group, entries)?;
        crate::group_api::durable(&self.shared, written)
            .await
            .map_err(|e| LogError::Io(std::io::Error::other(e)))
    }

    /// Deletes an empty group and its offsets; `Ok(false)` when there was no such group.
    pub fn delete_group(&self, group: &str) -> Result<bool, LogError> {
        match self.shared.groups.delete_group(group)? {
            code::NONE => Ok(true),
            code::GROUP_ID_NOT_FOUND => Ok(false),
            c => Err(LogError::InvalidRecord(format!(
                "group {group} cannot be deleted (error {c})"
            ))),
        }
    }

    /// Every group's state, by id.
    pub fn groups(&self) -> HashMap<String, GroupState> {
        self.shared
            .groups
            .list()
            .into_iter()
            .map(|(id, _, s)| (id, s))
            .collect()
    }
}

impl crate::Broker {
    /// A handle for in-process use; valid while the broker serves (and after, for reads).
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            shared: self.shared.clone(),
        }
    }
}
