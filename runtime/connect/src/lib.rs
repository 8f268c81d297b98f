//! `weir-connect`: the Connect runtime. It runs source and sink plugins (WebAssembly
//! components, through `weir-host`) as connectors with tasks over a [`weir_cluster::Cluster`]:
//! sources' batches go to topics, topics' records go to sinks, and their positions are kept
//! (source offsets in `connect-offsets`, sink offsets as the group `connect-<name>`'s commits).
//! Connector configs, target states and statuses live in compacted topics, so a restarted
//! runtime resumes every connector where it stopped.
//!
//! It reads no files and no environment of its own: the caller hands it the cluster, the
//! plugin registry and the settings. [`Runtime`] is the handle the REST API and the CLI drive.

pub mod config;
pub mod convert;
pub mod errors;
pub mod jsontext;
mod pipe;
pub mod providers;
pub mod registry;
mod sink;
mod source;
pub mod status;
pub mod store;
mod task;
pub mod transforms;
mod worker;

pub use config::{Backoff, ConfigMap, ConnectorConfig, WorkerConfig};
pub use errors::ErrorPolicy;
pub use providers::{ConfigProvider, Providers};
pub use registry::{Kind, PluginInfo, Registry};
pub use status::{ConnectorState, ConnectorStatus, State, TaskStatus};
pub use worker::{ConnectorInfo, Runtime, TargetState, TaskId, TaskInfo};

/// Why a runtime operation failed. The REST API maps these to Kafka Connect's status codes.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// 404.
    #[error("Connector {0} not found")]
    NotFound(String),
    /// 404.
    #[error("Task {1} of connector {0} not found")]
    TaskNotFound(String, u32),
    /// 409.
    #[error("Connector {0} already exists")]
    Exists(String),
    /// 400: names the key.
    #[error("{0}")]
    BadConfig(String),
    /// 500 (503 when retriable).
    #[error(transparent)]
    Cluster(#[from] weir_cluster::ClusterError),
    /// 500.
    #[error("{0}")]
    Internal(String),
}
