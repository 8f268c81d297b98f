//! `http`: outgoing requests to the hosts a connector's `weir.http.allow` names. Names are
//! resolved once and refused when they point at private, loopback or link-local addresses
//! unless the allow-list names the address itself; the checked addresses are pinned for the
//! connection; no redirects; host-owned headers refused; a timeout under the call deadline;
//! bodies capped.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::bindings::weir::connector::http;

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

/// The `http` capability of one task.
pub(crate) struct HttpCtx {
    plugin: String,
    allow: Vec<String>,
    timeout: Duration,
    /// Made on first use: most plugins never call out.
    client: Option<HttpClient>,
}

impl HttpCtx {
    pub(crate) fn new(plugin: &str, allow: &[String], timeout: Duration) -> HttpCtx {
        HttpCtx {
            plugin: plugin.to_string(),
            allow: allow.to_vec(),
            timeout,
            client: None,
        }
    }
}

impl http::Host for HttpCtx {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let (method, url) = (request.method.clone(), request.url.clone());
        let timeout = self.timeout;
        let client = self.client.get_or_insert_with(|| HttpClient::new(timeout));
        let result = client.send(&self.allow, request);
        let plugin = &self.plugin;
        match &result {
            Ok(r) => {
                tracing::debug!(%plugin, %method, %url, status = r.status, "plugin http request")
            }
            Err(e) => {
                tracing::warn!(%plugin, %method, %url, error = ?e, "plugin http request failed")
            }
        }
        result
    }
}

struct HasHttp;

impl HasData for HasHttp {
    type Data<'a> = &'a mut HttpCtx;
}

pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut HttpCtx,
) -> wasmtime::Result<()> {
    http::add_to_linker::<T, HasHttp>(linker, get)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
