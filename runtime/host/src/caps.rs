//! Capabilities a task may be granted: directories (WASI preopens, plus the `watch`
//! interface over them), outgoing HTTP to allow-listed hosts, and the task's limits. Nothing is
//! granted by default.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::HostError;
use crate::task::bindings::weir::connector::{http, watch};

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

/// The runtime's own connector keys; everything else is the plugin's configuration.
pub const RUNTIME_KEYS: &[&str] = &[
    "weir.dirs",
    "weir.http.allow",
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
fn host_to_guest(roots: &[(PathBuf, String)], host: &Path) -> Option<String> {
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

/// Largest HTTP response body a plugin may receive.
const MAX_HTTP_BODY: u64 = 16 << 20;

/// Headers that decide where or how a request travels: the host sets them, never a plugin
/// (a `Host` header would reach another virtual host behind an allowed proxy).
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
];

/// Addresses a plugin reaches only when the allow-list names the address itself: loopback,
/// private, link-local (cloud metadata), carrier-grade NAT, unique-local, unspecified.
fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn allowed(allow: &[String], host: &str, port: Option<u16>) -> bool {
    let host = host.to_ascii_lowercase();
    allow.iter().any(|a| match a.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => {
            h == host && port.map(|x| x.to_string()).as_deref() == Some(p)
        }
        _ => *a == host,
    })
}

/// A task's HTTP client: one agent (its TLS configuration and connection pool built once per
/// task, not per request) whose resolver answers with the addresses `send` checked.
pub(crate) struct HttpClient {
    agent: ureq::Agent,
    pinned: Arc<Mutex<Vec<std::net::SocketAddr>>>,
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration) -> HttpClient {
        let pinned: Arc<Mutex<Vec<std::net::SocketAddr>>> = Arc::default();
        let slot = pinned.clone();
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .resolver(move |_: &str| Ok(slot.lock().unwrap_or_else(|p| p.into_inner()).clone()))
            .build();
        HttpClient { agent, pinned }
    }

    /// Sends one request if its host is allow-listed. Redirects are not followed (a
    /// redirect could lead to a host that is not), the plugin sees the 3xx.
    pub(crate) fn send(
        &self,
        allow: &[String],
        req: http::Request,
    ) -> Result<http::Response, http::HttpError> {
        use http::HttpError as E;
        let url = url::Url::parse(&req.url)
            .map_err(|e| E::InvalidRequest(format!("{}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(E::InvalidRequest(format!(
                "{}: only http and https URLs can be sent",
                req.url
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| E::InvalidRequest(format!("{}: no host", req.url)))?;
        let port = url.port_or_known_default();
        if !allowed(allow, host, port) {
            let list = if allow.is_empty() {
                "it allows none".to_string()
            } else {
                format!("it allows {}", allow.join(", "))
            };
            return Err(E::Denied(format!(
                "{host}:{} is not in this connector's weir.http.allow ({list})",
                port.unwrap_or(0)
            )));
        }
        if !is_token(&req.method) {
            return Err(E::InvalidRequest(format!(
                "{:?} is not an HTTP method",
                req.method
            )));
        }
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(E::InvalidRequest(format!("header {name:?} is malformed")));
            }
            if HOST_OWNED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(E::InvalidRequest(format!(
                    "header {name} is set by the host, not by a plugin"
                )));
            }
        }
        // Resolve once, check, and connect to exactly what was checked (no second lookup that
        // could answer differently).
        let addrs = url
            .socket_addrs(|| None)
            .map_err(|e| E::Failed(format!("cannot resolve {host}: {e}")))?;
        let literal = matches!(
            url.host(),
            Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
        ) || host.eq_ignore_ascii_case("localhost");
        if !literal && let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
            return Err(E::Denied(format!(
                "{host} resolves to {}, a private address; allow-list the address itself to reach it",
                a.ip()
            )));
        }
        *self.pinned.lock().unwrap_or_else(|p| p.into_inner()) = addrs;
        let mut r = self.agent.request_url(&req.method, &url);
        for (k, v) in &req.headers {
            r = r.set(k, v);
        }
        let result = match &req.body {
            Some(b) => r.send_bytes(b),
            None => r.call(),
        };
        let resp = match result {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(E::Failed(e.to_string())),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
            .collect();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_HTTP_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| E::Failed(format!("reading the response: {e}")))?;
        if body.len() as u64 > MAX_HTTP_BODY {
            return Err(E::Failed(format!(
                "response body is over {MAX_HTTP_BODY} bytes"
            )));
        }
        Ok(http::Response {
            status,
            headers,
            body,
        })
    }
}

/// Most change events kept for a task between two `events` calls; older ones are dropped
/// (and the drop is logged), so a plugin that never reads cannot grow the host's memory.
const MAX_EVENTS: usize = 10_000;

/// The task's file watcher: events from `notify`, mapped to guest paths.
pub(crate) struct Watch {
    watcher: notify::RecommendedWatcher,
    events: Arc<Mutex<VecDeque<watch::Event>>>,
}

impl Watch {
    pub(crate) fn new(dirs: &[DirGrant], plugin: &str) -> Result<Watch, String> {
        use notify::event::{EventKind, ModifyKind, RenameMode};
        let roots: Vec<(PathBuf, String)> = dirs
            .iter()
            .filter_map(|d| Some((d.host.canonicalize().ok()?, d.guest.clone())))
            .collect();
        let events: Arc<Mutex<VecDeque<watch::Event>>> = Arc::default();
        let sink = events.clone();
        let plugin = plugin.to_string();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            let push = |path: &Path, change: watch::Change| {
                // The directory an event happened in must really be inside a grant (a path
                // through a symlink is not).
                let inside = path
                    .parent()
                    .and_then(|p| p.canonicalize().ok())
                    .is_some_and(|p| roots.iter().any(|(root, _)| p.starts_with(root)));
                if !inside {
                    return;
                }
                let Some(path) = host_to_guest(&roots, path) else {
                    return;
                };
                let mut q = sink.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() >= MAX_EVENTS {
                    q.pop_front();
                    tracing::warn!(plugin, "watch events not read; dropping the oldest");
                }
                q.push_back(watch::Event { path, change });
            };
            match ev.kind {
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Created)),
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Removed)),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    if let [from, to] = ev.paths.as_slice() {
                        push(from, watch::Change::Removed);
                        push(to, watch::Change::Created);
                    }
                }
                EventKind::Modify(ModifyKind::Metadata(_)) => {}
                EventKind::Modify(_) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Modified)),
                _ => {}
            }
        };
        // Never follow symlinks while walking a recursive watch: one could lead out of the
        // grant (WASI lets a plugin create relative symlinks inside a writable directory).
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = <notify::RecommendedWatcher as notify::Watcher>::new(handler, config)
            .map_err(|e| format!("cannot start a file watcher: {e}"))?;
        Ok(Watch { watcher, events })
    }

    pub(crate) fn add(&mut self, host: &Path, recursive: bool) -> Result<(), String> {
        use notify::Watcher;
        let mode = if recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        self.watcher
            .watch(host, mode)
            .map_err(|e| format!("cannot watch {}: {e}", host.display()))
    }

    pub(crate) fn drain(&self, max: u32) -> Vec<watch::Event> {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(max as usize);
        q.drain(..n).collect()
    }
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
    fn allow_list_matches_host_and_port() {
        let allow = vec!["example.com".to_string(), "127.0.0.1:8080".to_string()];
        assert!(allowed(&allow, "EXAMPLE.com", Some(443)));
        assert!(allowed(&allow, "127.0.0.1", Some(8080)));
        assert!(!allowed(&allow, "127.0.0.1", Some(8081)));
        assert!(!allowed(&allow, "example.org", Some(80)));
        assert!(!allowed(&[], "example.com", Some(80)));
    }

    #[test]
    fn requests_cannot_forge_the_request_line_or_host_owned_headers() {
        let allow = vec!["127.0.0.1:9".to_string()];
        let req = |method: &str, headers: Vec<(String, String)>| http::Request {
            method: method.into(),
            url: "http://127.0.0.1:9/x".into(),
            headers,
            body: None,
        };
        let t = Duration::from_millis(200);
        for bad in [
            "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\nGET",
            "",
            "GE T",
        ] {
            let e = HttpClient::new(t)
                .send(&allow, req(bad, vec![]))
                .unwrap_err();
            assert!(
                matches!(&e, http::HttpError::InvalidRequest(m) if m.contains("not an HTTP method")),
                "{e:?}"
            );
        }
        for (name, value) in [
            ("Host", "internal.example"),
            ("transfer-encoding", "chunked"),
            ("Proxy-Authorization", "x"),
            ("x-ok", "a\r\nHost: internal"),
            ("bad header", "x"),
        ] {
            let e = HttpClient::new(t)
                .send(&allow, req("GET", vec![(name.into(), value.into())]))
                .unwrap_err();
            assert!(
                matches!(&e, http::HttpError::InvalidRequest(_)),
                "{name}: {e:?}"
            );
        }
        assert!(is_private("169.254.169.254".parse().unwrap()));
        assert!(is_private("10.1.2.3".parse().unwrap()));
        assert!(is_private("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
        assert!(!is_private("93.184.216.34".parse().unwrap()));
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
