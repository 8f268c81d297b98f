//! The host's capabilities, one module each, laid out as wasmtime's WASI crates are: a
//! context struct holding that capability's per-task state, its `Host` implementation of the
//! generated WIT interface, and an `add_to_linker` that wires it into a task's linker through a
//! projection of the store's data. `log` and `state` are always granted; `http` and `watch`
//! (with WASI preopens) only as the task's [`TaskConfig`] says. A new capability (SQL next) is
//! a new module here, a field of the task's store data, and one `add_to_linker` call in
//! `task.rs`.
//!
//! This module parses what a connector's `weir.*` keys grant ([`TaskConfig`]) and maps guest
//! paths to host paths inside those grants. Nothing is granted by default.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::time::Duration;

use crate::HostError;

pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod sql;
pub(crate) mod state;
pub(crate) mod watch;

/// A directory granted to a task: `host` is seen by the plugin as `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// What one task is granted, and its limits (none: the host's defaults).
#[derive(Debug, Clone, Default)]
pub struct TaskConfig {
    /// Directories the plugin can open files in (WASI preopens) and watch.
    pub dirs: Vec<DirGrant>,
    /// Hosts the plugin may call over HTTP: `host` (any port) or `host:port`.
    pub http_allow: Vec<String>,
    /// Databases the plugin may connect to, by grant name (`weir.sql.<name>.url`).
    pub sql: SqlGrants,
    /// Linear memory cap for the task, in bytes.
    pub memory_limit: Option<usize>,
    /// Longest one call into the plugin may run.
    pub call_deadline: Option<Duration>,
    /// Replace the instance after this many calls that do the work (apply, poll, ack, put,
    /// flush; not open, close or describe), at a point with no work in flight.
    pub recycle_after_calls: Option<u64>,
    /// Replace the instance once its linear memory exceeds this many bytes.
    pub recycle_above_memory: Option<usize>,
    /// A name for the task in logs, e.g. `orders-sink-0`.
    pub task: String,
}

/// SQL connection grants: name to database URL. The URLs hold credentials: `Debug` shows
/// them with their passwords masked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SqlGrants(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for SqlGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, crate::sql::masked_url(v))))
            .finish()
    }
}

/// Whether `key` is a SQL grant (`weir.sql.<name>.url`), and its name.
pub fn sql_grant_name(key: &str) -> Option<&str> {
    key.strip_prefix("weir.sql.")?.strip_suffix(".url")
}

/// The runtime's own connector keys; everything else is the plugin's configuration.
pub const RUNTIME_KEYS: &[&str] = &[
    "weir.dirs",
    "weir.http.allow",
    "weir.sql.<name>.url",
    "weir.memory.limit.bytes",
    "weir.call.deadline.ms",
    "weir.recycle.calls",
    "weir.recycle.memory.bytes",
    "weir.task",
];

impl TaskConfig {
    /// Splits a connector's configuration into the runtime's `weir.*` keys (grants and limits)
    /// and the plugin's own keys, which are what the plugin's `open` receives.
    ///
    /// - `weir.dirs`: `HOST_PATH:GUEST_PATH[:ro]`, comma-separated;
    /// - `weir.http.allow`: `host` or `host:port`, comma-separated;
    /// - `weir.sql.<name>.url`: a database the plugin may open as `<name>` (a secret);
    /// - `weir.memory.limit.bytes`, `weir.call.deadline.ms`, `weir.recycle.calls`,
    ///   `weir.recycle.memory.bytes`: numbers; `weir.task`: a name for logs.
    pub fn from_config(
        config: &[(String, String)],
    ) -> Result<(TaskConfig, Vec<(String, String)>), HostError> {
        let mut tc = TaskConfig::default();
        let mut rest = Vec::new();
        let number = |k: &str, v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| HostError::Config(format!("{k} must be a whole number, got {v:?}")))
        };
        for (k, v) in config {
            match k.as_str() {
                "weir.dirs" => {
                    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        tc.dirs.push(parse_dir(item)?);
                    }
                }
                "weir.http.allow" => tc.http_allow.extend(
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty()),
                ),
                "weir.memory.limit.bytes" => {
                    let bytes = number(k, v)?;
                    if bytes == 0 || bytes > crate::MAX_MEMORY_LIMIT as u64 {
                        return Err(HostError::Config(format!(
                            "{k} must be between 1 and {} (4 GiB, the most a wasm32 memory can hold), got {bytes}",
                            crate::MAX_MEMORY_LIMIT
                        )));
                    }
                    tc.memory_limit = Some(bytes as usize)
                }
                "weir.call.deadline.ms" => {
                    let ms = number(k, v)?;
                    if !(1..=3_600_000).contains(&ms) {
                        return Err(HostError::Config(format!(
                            "{k} must be between 1 and 3600000 (one hour), got {ms}"
                        )));
                    }
                    tc.call_deadline = Some(Duration::from_millis(ms))
                }
                "weir.recycle.calls" => tc.recycle_after_calls = Some(number(k, v)?.max(1)),
                "weir.recycle.memory.bytes" => {
                    tc.recycle_above_memory = Some(number(k, v)? as usize)
                }
                "weir.task" => tc.task = v.clone(),
                k if sql_grant_name(k).is_some() => {
                    let name = sql_grant_name(k).unwrap_or_default();
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        return Err(HostError::Config(format!(
                            "{k}: a SQL grant's name is letters, digits, '_' and '-'"
                        )));
                    }
                    tc.sql.0.insert(name.to_string(), v.trim().to_string());
                }
                other if other.starts_with("weir.") => {
                    return Err(HostError::Config(format!(
                        "unknown runtime key {other:?} (known: {})",
                        RUNTIME_KEYS.join(", ")
                    )));
                }
                _ => rest.push((k.clone(), v.clone())),
            }
        }
        Ok((tc, rest))
    }
}

fn parse_dir(item: &str) -> Result<DirGrant, HostError> {
    let parts: Vec<&str> = item.split(':').collect();
    let (host, guest, read_only) = match parts.as_slice() {
        [h, g] => (*h, *g, false),
        [h, g, "ro"] => (*h, *g, true),
        [h, g, "rw"] => (*h, *g, false),
        _ => {
            return Err(HostError::Config(format!(
                "weir.dirs entry {item:?} is not HOST_PATH:GUEST_PATH[:ro]"
            )));
        }
    };
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(HostError::Config(format!(
            "weir.dirs: {} is not a directory",
            host.display()
        )));
    }
    if !guest.starts_with('/') || guest_components(guest).is_none() {
        return Err(HostError::Config(format!(
            "weir.dirs: guest path {guest:?} must be absolute and have no `..`"
        )));
    }
    Ok(DirGrant {
        host,
        guest: guest.to_string(),
        read_only,
    })
}

/// The normal components of a guest path; none if it tries to climb with `..`.
fn guest_components(path: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Maps a guest path to the host path it names, if it lies in a granted directory (after
/// resolving symlinks, so a link cannot lead out of the grant).
pub(crate) fn guest_to_host(dirs: &[DirGrant], guest: &str) -> Result<PathBuf, String> {
    let want = guest_components(guest).ok_or_else(|| format!("{guest}: `..` is not allowed"))?;
    let grant = dirs
        .iter()
        .filter_map(|d| {
            let g = guest_components(&d.guest)?;
            want.starts_with(&g).then_some((d, g.len()))
        })
        .max_by_key(|(_, len)| *len)
        .ok_or_else(|| format!("{guest} is not under a directory granted to this connector"))?;
    let (d, skip) = grant;
    let mut host = d.host.clone();
    host.extend(&want[skip..]);
    let real = host.canonicalize().map_err(|e| format!("{guest}: {e}"))?;
    let root = d.host.canonicalize().map_err(|e| format!("{guest}: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!("{guest} leads outside its granted directory"));
    }
    Ok(real)
}

/// Maps a host path back to the guest's view of it.
pub(crate) fn host_to_guest(roots: &[(PathBuf, String)], host: &Path) -> Option<String> {
    roots.iter().find_map(|(root, guest)| {
        let rest = host.strip_prefix(root).ok()?;
        let mut g = guest.trim_end_matches('/').to_string();
        for c in rest.components() {
            if let PathComponent::Normal(s) = c {
                g.push('/');
                g.push_str(&s.to_string_lossy());
            }
        }
        Some(if g.is_empty() { "/".into() } else { g })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_keys_are_split_from_plugin_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = vec![
            (
                "weir.dirs".to_string(),
                format!("{}:/data:ro", dir.path().display()),
            ),
            (
                "weir.http.allow".to_string(),
                "Example.com, 127.0.0.1:8080".to_string(),
            ),
            ("weir.recycle.calls".to_string(), "100".to_string()),
            ("topic".to_string(), "t".to_string()),
        ];
        let (tc, rest) = TaskConfig::from_config(&cfg).unwrap();
        assert_eq!(rest, vec![("topic".to_string(), "t".to_string())]);
        assert_eq!(tc.dirs.len(), 1);
        assert!(tc.dirs[0].read_only);
        assert_eq!(tc.dirs[0].guest, "/data");
        assert_eq!(tc.http_allow, vec!["example.com", "127.0.0.1:8080"]);
        assert_eq!(tc.recycle_after_calls, Some(100));

        for ms in ["0", "3600001", "soon"] {
            let bad = vec![("weir.call.deadline.ms".to_string(), ms.to_string())];
            let err = TaskConfig::from_config(&bad).unwrap_err().to_string();
            assert!(err.contains("weir.call.deadline.ms"), "{err}");
        }
        let bad = vec![("weir.dirz".to_string(), "x".to_string())];
        let err = TaskConfig::from_config(&bad).unwrap_err().to_string();
        assert!(err.contains("unknown runtime key \"weir.dirz\""), "{err}");
        let bad = vec![("weir.dirs".to_string(), "/nonexistent-dir:/x".to_string())];
        assert!(TaskConfig::from_config(&bad).is_err());
        let bad = vec![(
            "weir.dirs".to_string(),
            format!("{}:/a/../b", dir.path().display()),
        )];
        assert!(TaskConfig::from_config(&bad).is_err());
    }

    #[test]
    fn guest_paths_stay_inside_their_grant() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        let dirs = vec![DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/data".into(),
            read_only: false,
        }];
        let sub = guest_to_host(&dirs, "/data/sub").unwrap();
        assert_eq!(sub, dir.path().canonicalize().unwrap().join("sub"));
        assert!(guest_to_host(&dirs, "/data/../etc").is_err());
        assert!(guest_to_host(&dirs, "/etc").is_err());
        let e = guest_to_host(&dirs, "/data/escape").unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }
}
