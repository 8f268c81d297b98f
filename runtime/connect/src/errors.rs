//! Error handling: Kafka Connect's `errors.*` keys (tolerance, dead letter queue with its
//! context headers, logging), how a task failure is classified (retriable: the task restarts
//! with backoff; fatal: it stays FAILED), and the counters the status reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_cluster::Cluster;
use weir_host::HostError;
use weir_host::types::Error as PluginError;

use crate::ConnectError;

/// Why a task stopped working.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub message: String,
    /// A plugin's `fatal` or config error: restarting will not help.
    pub fatal: bool,
}

impl Failure {
    pub fn retriable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            fatal: false,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::retriable(message)
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Failure {
        let fatal = matches!(
            &e,
            HostError::Plugin {
                error: PluginError::Fatal(_) | PluginError::InvalidConfig(_),
                ..
            } | HostError::BadConfig { .. }
                | HostError::Config(_)
                | HostError::WrongWorld { .. }
                | HostError::VersionMismatch { .. }
                | HostError::Invalid { .. }
        );
        Failure {
            message: e.to_string(),
            fatal,
        }
    }
}

/// The bad record index a plugin reported, if that is what the error is.
pub(crate) fn bad_record(e: &HostError) -> Option<(u32, String)> {
    match e {
        HostError::Plugin {
            error: PluginError::BadRecord(b),
            ..
        } => Some((b.index, b.message.clone())),
        _ => None,
    }
}

/// What a connector's `errors.*` keys ask for.
#[derive(Debug, Clone, Default)]
pub struct ErrorPolicy {
    /// `errors.tolerance=all`: skip (and dead-letter) records that fail, instead of failing.
    pub tolerate: bool,
    /// `errors.deadletterqueue.topic.name`.
    pub dlq: Option<String>,
    /// `errors.deadletterqueue.context.headers.enable`.
    pub context_headers: bool,
    /// `errors.log.enable`, `errors.log.include.messages`.
    pub log: bool,
    pub log_messages: bool,
}

fn flag(raw: &BTreeMap<String, String>, key: &str) -> Result<bool, ConnectError> {
    match raw.get(key).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(s) if s == "true" => Ok(true),
        Some(s) if s == "false" => Ok(false),
        Some(s) => Err(ConnectError::BadConfig(format!(
            "{key}: invalid value {s:?}: expected true or false"
        ))),
    }
}

impl ErrorPolicy {
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<ErrorPolicy, ConnectError> {
        let tolerate = match raw.get("errors.tolerance").map(|s| s.trim()) {
            None | Some("none") => false,
            Some("all") => true,
            Some(v) => {
                return Err(ConnectError::BadConfig(format!(
                    "errors.tolerance: invalid value {v:?}: expected none or all"
                )));
            }
        };
        let dlq = raw
            .get("errors.deadletterqueue.topic.name")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(t) = &dlq {
            weir_log::validate_topic_name(t).map_err(|e| {
                ConnectError::BadConfig(format!("errors.deadletterqueue.topic.name: {e}"))
            })?;
        }
        for key in ["errors.retry.timeout", "errors.retry.delay.max.ms"] {
            if let Some(v) = raw.get(key)
                && v.trim().parse::<i64>().is_err()
            {
                return Err(ConnectError::BadConfig(format!(
                    "{key}: invalid value {v:?}: expected a number of milliseconds"
                )));
            }
        }
        Ok(ErrorPolicy {
            tolerate,
            dlq,
            context_headers: flag(raw, "errors.deadletterqueue.context.headers.enable")?,
            log: flag(raw, "errors.log.enable")?,
            log_messages: flag(raw, "errors.log.include.messages")?,
        })
    }
}

/// Counters a task's status reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records skipped under `errors.tolerance=all`.
    pub tolerated: AtomicU64,
    /// Of those, written to the dead letter queue.
    pub dead_lettered: AtomicU64,
    /// Times the task was restarted after failing.
    pub restarts: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.tolerated.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
        )
    }
}

/// A record that failed, as it is dead-lettered.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadRecord {
    /// A record of a batch, as it is there.
    pub fn of(r: &weir_batch::RecordRef<'_>) -> DeadRecord {
        DeadRecord {
            topic: r.topic().to_string(),
            partition: r.partition(),
            offset: r.offset(),
            timestamp: r.timestamp(),
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

/// Where a record failed, as Kafka names the stages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    TaskPut,
    TaskPoll,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
            Stage::TaskPoll => "TASK_POLL",
        }
    }
}

/// A task's error reporter: fails the task, or counts, logs and dead-letters the record.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    pub policy: ErrorPolicy,
    pub cluster: Arc<dyn Cluster>,
    pub rt: tokio::runtime::Handle,
    pub connector: String,
    /// The connector's class, named in the DLQ headers for the plugin's own failures.
    pub class: String,
    pub task: u32,
    pub counters: Arc<Counters>,
}

impl Reporter {
    /// A record failed at `stage` in `class` (a converter's or transform's class; `None`: the
    /// connector's plugin): `Err` (the task fails) unless errors are tolerated.
    pub fn report(
        &self,
        stage: Stage,
        class: Option<&str>,
        rec: DeadRecord,
        error: &str,
    ) -> Result<(), Failure> {
        // A record read from the log has its position; a source's record only its topic.
        let at = match (rec.partition, rec.offset) {
            (Some(p), Some(o)) => format!(
                "{error} at stage {} for {}-{p} offset {o}",
                stage.name(),
                rec.topic
            ),
            _ => format!(
                "{error} at stage {} for a record to {}",
                stage.name(),
                if rec.topic.is_empty() {
                    "the connector's topic"
                } else {
                    &rec.topic
                }
            ),
        };
        if !self.policy.tolerate {
            return Err(Failure::retriable(format!(
                "{at} (tolerance exceeded: errors.tolerance is none)"
            )));
        }
        self.counters.tolerated.fetch_add(1, Ordering::Relaxed);
        if self.policy.log {
            if self.policy.log_messages {
                tracing::error!(error = %at, key = ?rec.key.as_deref().map(String::from_utf8_lossy), value = ?rec.value.as_deref().map(String::from_utf8_lossy), "record skipped");
            } else {
                tracing::error!(error = %at, "record skipped");
            }
        }
        let Some(dlq) = &self.policy.dlq else {
            return Ok(());
        };
        let mut headers = rec.headers.clone();
        if self.policy.context_headers {
            let h = |k: &str, v: String| (format!("__connect.errors.{k}"), Some(v.into_bytes()));
            headers.push(h("topic", rec.topic.clone()));
            if let Some(p) = rec.partition {
                headers.push(h("partition", p.to_string()));
            }
            if let Some(o) = rec.offset {
                headers.push(h("offset", o.to_string()));
            }
            headers.push(h("connector.name", self.connector.clone()));
            headers.push(h("task.id", self.task.to_string()));
            headers.push(h("stage", stage.name().to_string()));
            headers.push(h("class.name", class.unwrap_or(&self.class).to_string()));
            headers.push(h(
                "exception.class.name",
                "org.apache.kafka.connect.errors.DataException".to_string(),
            ));
            headers.push(h("exception.message", error.to_string()));
            headers.push(h("exception.stacktrace", at.clone()));
        }
        // Encoded directly: a record may repeat a header name, and every one is kept.
        let mut enc = weir_log::raw::BatchEncoder::new();
        enc.push(
            if rec.timestamp > 0 {
                rec.timestamp
            } else {
                weir_log::now_ms()
            },
            rec.key.as_deref(),
            rec.value.as_deref(),
            headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
        let batch = enc.finish();
        let cluster = self.cluster.clone();
        let topic = dlq.clone();
        self.rt
            .block_on(async move {
                cluster.ensure_topic(&topic).await?;
                cluster.produce(&topic, 0, batch).await
            })
            .map_err(|e| {
                Failure::retriable(format!("cannot write to the dead letter queue {dlq}: {e}"))
            })?;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policy_keys_are_checked_by_name() {
        let p = ErrorPolicy::parse(&cfg(&[
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", "dlq"),
            ("errors.deadletterqueue.context.headers.enable", "true"),
        ]))
        .unwrap();
        assert!(p.tolerate && p.context_headers && !p.log);
        assert_eq!(p.dlq.as_deref(), Some("dlq"));
        assert!(!ErrorPolicy::parse(&cfg(&[])).unwrap().tolerate);
        for (k, v) in [
            ("errors.tolerance", "some"),
            ("errors.deadletterqueue.topic.name", "bad/name"),
            ("errors.log.enable", "yes"),
            ("errors.retry.timeout", "soon"),
        ] {
            let e = ErrorPolicy::parse(&cfg(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn fatal_plugin_errors_are_not_restarted() {
        let plugin = |error| HostError::Plugin {
            plugin: "p".into(),
            function: "put".into(),
            error,
        };
        assert!(Failure::from(plugin(PluginError::Fatal("gone".into()))).fatal);
        assert!(!Failure::from(plugin(PluginError::Retriable("later".into()))).fatal);
        let trap = HostError::Trap {
            plugin: "p".into(),
            function: "put".into(),
            message: "unreachable".into(),
        };
        assert!(!Failure::from(trap).fatal);
    }
}
