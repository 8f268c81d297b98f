//! `weir-cluster`: what the Connect runtime needs from a Kafka cluster, at the level of record
//! batches: produce a batch to a partition, fetch from one, list and create topics, read
//! partition offsets, and keep a group's committed offsets.
//!
//! [`Embedded`] implements it over the built-in broker's in-process [`BrokerHandle`] (no
//! sockets, no re-encoding). A remote implementation over the Kafka protocol (for an external
//! Kafka or Redpanda cluster) implements the same trait, so nothing here assumes one process:
//! every call is asynchronous and may fail with [`ClusterError::Unavailable`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use weir_broker::BrokerHandle;
use weir_log::LogError;

/// A boxed future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A group's committed offsets: (topic, partition) -> next offset to read.
pub type GroupOffsets = BTreeMap<(String, i32), i64>;

/// Why a cluster call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// The request was refused and retrying it unchanged will not help.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not serve the request now (storage error, lost connection): retry.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

impl ClusterError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ClusterError::Unavailable(_))
    }
}

impl From<LogError> for ClusterError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::UnknownTopicOrPartition(t) => ClusterError::UnknownTopicOrPartition(t),
            LogError::TopicExists(t) => ClusterError::TopicExists(t),
            LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            } => ClusterError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            },
            LogError::Io(e) => ClusterError::Unavailable(e.to_string()),
            other => ClusterError::Invalid(other.to_string()),
        }
    }
}

/// A topic: its name and partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub partitions: u32,
}

/// Offsets a produce was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Whole Kafka record batches read from a partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start: i64,
}

/// First and one-past-last offsets of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: i64,
    pub log_end: i64,
}

/// The batch-level interface to a cluster.
pub trait Cluster: Send + Sync + std::fmt::Debug + 'static {
    /// The cluster's id.
    fn cluster_id(&self) -> String;
    /// Appends Kafka v2 record batches to a partition; resolves once they are stored (acks=all).
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        batches: Bytes,
    ) -> BoxFuture<'a, Result<Produced, ClusterError>>;
    /// Reads batches from `offset`, at most about `max_bytes` (at least one batch), waiting up
    /// to `wait` when there is nothing yet.
    fn fetch<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Fetched, ClusterError>>;
    /// Every topic.
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicMeta>, ClusterError>>;
    /// Creates a topic with configuration overrides; [`ClusterError::TopicExists`] if it exists.
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<TopicMeta, ClusterError>>;
    /// The topic, created with the cluster's defaults if it does not exist (as a producer's
    /// first use creates it where auto-creation is on).
    fn ensure_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<TopicMeta, ClusterError>>;
    /// Log start and end offsets of a partition.
    fn offsets<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Offsets, ClusterError>>;
    /// A group's committed offsets.
    fn committed<'a>(&'a self, group: &'a str)
    -> BoxFuture<'a, Result<GroupOffsets, ClusterError>>;
    /// Commits offsets for a group without joining it; resolves once they are durable.
    fn commit<'a>(
        &'a self,
        group: &'a str,
        offsets: GroupOffsets,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    /// Deletes a group and its offsets; `false` when there was none.
    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<bool, ClusterError>>;
}

/// The built-in broker, in the same process.
#[derive(Debug, Clone)]
pub struct Embedded {
    broker: BrokerHandle,
}

impl Embedded {
    pub fn new(broker: BrokerHandle) -> Embedded {
        Embedded { broker }
    }
}

fn meta(t: weir_log::TopicInfo) -> TopicMeta {
    TopicMeta {
        name: t.name,
        partitions: t.partitions,
    }
}

impl Cluster for Embedded {
    fn cluster_id(&self) -> String {
        self.broker.cluster_id().to_string()
    }

    fn produce<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        batches: Bytes,
    ) -> BoxFuture<'a, Result<Produced, ClusterError>> {
        Box::pin(async move {
            let p = self.broker.produce(topic, partition, &batches).await?;
            Ok(Produced {
                base_offset: p.base_offset,
                last_offset: p.last_offset,
            })
        })
    }

    fn fetch<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Fetched, ClusterError>> {
        Box::pin(async move {
            let r = self
                .broker
                .fetch(topic, partition, offset, max_bytes, wait)
                .await?;
            Ok(Fetched {
                records: r.records,
                high_watermark: r.high_watermark,
                log_start: r.log_start_offset,
            })
        })
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicMeta>, ClusterError>> {
        Box::pin(async move { Ok(self.broker.topics().into_iter().map(meta).collect()) })
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<TopicMeta, ClusterError>> {
        Box::pin(async move { Ok(meta(self.broker.create_topic(name, partitions, configs)?)) })
    }

    fn ensure_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<TopicMeta, ClusterError>> {
        Box::pin(async move { Ok(meta(self.broker.ensure_topic(name)?)) })
    }

    fn offsets<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Offsets, ClusterError>> {
        Box::pin(async move {
            let o = self.broker.offsets(topic, partition)?;
            Ok(Offsets {
                log_start: o.log_start,
                log_end: o.log_end,
            })
        })
    }

    fn committed<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxFuture<'a, Result<GroupOffsets, ClusterError>> {
        Box::pin(async move { Ok(self.broker.committed(group)) })
    }

    fn commit<'a>(
        &'a self,
        group: &'a str,
        offsets: GroupOffsets,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let v: Vec<(String, i32, i64)> =
                offsets.into_iter().map(|((t, p), o)| (t, p, o)).collect();
            Ok(self.broker.commit(group, &v).await?)
        })
    }

    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<bool, ClusterError>> {
        Box::pin(async move { Ok(self.broker.delete_group(group)?) })
    }
}
