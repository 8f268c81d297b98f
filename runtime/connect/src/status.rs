//! Connector and task statuses, in Kafka Connect's states and JSON.

use serde::{Deserialize, Serialize};

/// A connector's or task's state, as Kafka Connect names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Stopped,
    Failed,
    Restarting,
}

/// A task's status (`GET /connectors/{name}/tasks/{id}/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<String>,
    /// Times the task restarted by itself after failing (Weir's addition; left out at 0).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub restarts: u64,
    /// Records skipped under `errors.tolerance=all` (left out at 0).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub errors_tolerated: u64,
    /// Of those, written to the dead letter queue (left out at 0).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub dead_lettered: u64,
    /// The replication slots the task streams from (change data capture), with the WAL each
    /// holds back on its server (Weir's addition; left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub replication_slots: Vec<SlotStatus>,
}

/// A replication slot a task streams from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub slot_name: String,
    /// Bytes of WAL from the slot's restart position to the server's current one (none until
    /// first measured).
    pub retained_wal_bytes: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The connector part of a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorState {
    pub state: State,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<String>,
}

/// `GET /connectors/{name}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: ConnectorState,
    pub tasks: Vec<TaskStatus>,
    #[serde(rename = "type")]
    pub kind: crate::Kind,
}

impl<'de> Deserialize<'de> for crate::Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "source" => Ok(crate::Kind::Source),
            "sink" => Ok(crate::Kind::Sink),
            other => Err(serde::de::Error::custom(format!(
                "unknown connector type {other}"
            ))),
        }
    }
}
