//! The host's capabilities and small helpers for descriptors and configuration.

use crate::bindings::weir::connector;
use crate::{ConfigError, ConfigKey, ConfigType, Descriptor, Error, Event, Level, PluginKind};

/// Logs into the host's tracing span for this connector task.
pub fn log(level: Level, message: &str) {
    connector::log::log(level, message);
}

/// Reads a value from the task's private state. The state lives as long as the task: it
/// survives the recycling of the plugin's instance, not a task restart.
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    connector::state::get(key)
}

/// Stores a value in the task's private state (keys up to 1 KiB, values up to 1 MiB, 64 MiB
/// per task); the error says which bound it hit.
pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
    connector::state::set(key, value)
}

/// Removes a value from the task's private state.
pub fn state_delete(key: &str) {
    connector::state::delete(key);
}

/// Outgoing HTTP to the hosts the connector's `weir.http.allow` names.
pub mod http {
    pub use crate::bindings::weir::connector::http::{HttpError, Request, Response, send};

    /// A GET request with no headers.
    pub fn get(url: &str) -> Result<Response, HttpError> {
        send(&Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        })
    }
}

/// Starts watching `path` (under a directory the connector grants) for changes.
pub fn watch(path: &str, recursive: bool) -> Result<(), String> {
    connector::watch::watch(path, recursive)
}

/// The change events since the last call, oldest first, at most `max`.
pub fn watch_events(max: u32) -> Vec<Event> {
    connector::watch::events(max)
}

/// A descriptor with no configuration keys (add them to `.config`).
pub fn descriptor(name: &str, version: &str, kind: PluginKind, description: &str) -> Descriptor {
    Descriptor {
        name: name.into(),
        version: version.into(),
        kind,
        description: description.into(),
        config: Vec::new(),
    }
}

/// A configuration key's definition.
pub fn config_key(
    name: &str,
    type_: ConfigType,
    required: bool,
    default_value: Option<&str>,
    documentation: &str,
) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        type_,
        default_value: default_value.map(Into::into),
        documentation: documentation.into(),
        required,
        secret: false,
    }
}

/// The value of `key` in a plugin's configuration.
pub fn config_get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The value of a required key, or the `invalid-config` error the runtime expects.
pub fn config_required<'a>(config: &'a [(String, String)], key: &str) -> Result<&'a str, Error> {
    config_get(config, key).ok_or_else(|| invalid_config(key, "required"))
}

/// An `invalid-config` error for `key`.
pub fn invalid_config(key: &str, message: &str) -> Error {
    Error::InvalidConfig(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// A `bad-record` error for the record at `index` of the batch.
pub fn bad_record(index: usize, message: &str) -> Error {
    Error::BadRecord(crate::BadRecord {
        index: index as u32,
        message: message.into(),
    })
}
