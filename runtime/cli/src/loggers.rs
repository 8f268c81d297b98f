//! Log levels changed at run time (`GET|PUT /admin/loggers`): the subscriber's filter sits
//! behind a reload handle; `root` is the default level and every other logger is a `tracing`
//! target prefix (`weir_connect`, `weir_broker::groups`), as Kafka Connect's loggers are Java
//! package names.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

type Handle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// Installs the subscriber: `RUST_LOG`, else `default_level`, changeable later.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    let (filter, handle) = reload::Layer::new(filter);
    let _ = HANDLE.set(handle);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

/// The root level, and each logger set through the API: (level, when, in ms).
type State = (String, BTreeMap<String, (String, i64)>);

/// The levels set through the API, over the starting filter.
#[derive(Debug)]
pub struct Levels {
    base: String,
    state: Mutex<State>,
}

impl Levels {
    pub fn new(default_level: &str) -> Levels {
        let base = std::env::var("RUST_LOG").unwrap_or_else(|_| default_level.to_string());
        let root = base
            .split(',')
            .find(|d| !d.contains('='))
            .unwrap_or(default_level)
            .to_ascii_uppercase();
        Levels {
            base,
            state: Mutex::new((root, BTreeMap::new())),
        }
    }
}

fn level(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        "OFF" => "off",
        _ => return None,
    })
}

impl weir_http::LogLevels for Levels {
    fn levels(&self) -> BTreeMap<String, (String, Option<i64>)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, (String, Option<i64>)> =
            s.1.iter()
                .map(|(k, (l, t))| (k.clone(), (l.clone(), Some(*t))))
                .collect();
        out.insert("root".into(), (s.0.clone(), None));
        out
    }

    fn set(&self, logger: &str, lvl: &str) -> Result<Vec<String>, String> {
        let directive = level(lvl).ok_or_else(|| format!("invalid log level '{lvl}'."))?;
        if logger.is_empty() || logger.contains([',', '=', ' ']) {
            return Err(format!("invalid logger name '{logger}'."));
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = weir_log::now_ms();
        let upper = directive.to_ascii_uppercase();
        let affected: Vec<String> = if logger == "root" {
            s.0 = upper;
            // The root level applies to every logger not set on its own.
            s.1.clear();
            vec!["root".into()]
        } else {
            s.1.insert(logger.to_string(), (upper, now));
            vec![logger.to_string()]
        };
        let mut spec = if logger == "root" {
            directive.to_string()
        } else {
            format!("{},{}", self.base, s.0.to_ascii_lowercase())
        };
        for (k, (l, _)) in &s.1 {
            spec.push_str(&format!(",{k}={}", l.to_ascii_lowercase()));
        }
        let filter =
            EnvFilter::try_new(&spec).map_err(|e| format!("cannot apply {spec:?}: {e}"))?;
        if let Some(h) = HANDLE.get() {
            h.reload(filter).map_err(|e| e.to_string())?;
        }
        tracing::info!(logger, level = directive, "log level changed");
        Ok(affected)
    }
}
