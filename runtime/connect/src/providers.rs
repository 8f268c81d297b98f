//! Config providers: `${provider:[path:]key}` references in connector configs, resolved when
//! tasks start (Kafka Connect's syntax), so secrets stay out of `connect-configs` and of every
//! REST answer. The runtime reads no files and no environment itself: the caller registers
//! providers (the CLI registers `env` and `file`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ConnectError;
use crate::config::ConfigMap;

/// Gives the value of `key` (in `path`, when the reference has one).
pub trait ConfigProvider: Send + Sync + std::fmt::Debug {
    fn get(&self, path: Option<&str>, key: &str) -> Result<String, String>;
}

/// Registered providers by name.
#[derive(Debug, Clone, Default)]
pub struct Providers(BTreeMap<String, Arc<dyn ConfigProvider>>);

impl Providers {
    pub fn with(mut self, name: &str, p: Arc<dyn ConfigProvider>) -> Providers {
        self.0.insert(name.to_string(), p);
        self
    }

    /// Every reference in every value resolved; an error names the key (never the value).
    pub fn resolve(&self, raw: &ConfigMap) -> Result<ConfigMap, ConnectError> {
        let mut out = ConfigMap::new();
        for (k, v) in raw {
            out.insert(k.clone(), self.resolve_value(k, v)?);
        }
        Ok(out)
    }

    fn resolve_value(&self, key: &str, v: &str) -> Result<String, ConnectError> {
        if !v.contains("${") {
            return Ok(v.to_string());
        }
        let mut out = String::new();
        let mut rest = v;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let reference = &after[..end];
            let mut parts = reference.splitn(3, ':');
            let provider = parts.next().unwrap_or("");
            let (path, name) = match (parts.next(), parts.next()) {
                (Some(k), None) => (None, k),
                (Some(p), Some(k)) => (Some(p), k),
                _ => {
                    // Not a reference (no provider part): kept as written, as Kafka does.
                    out.push_str(&rest[start..start + 3 + end]);
                    rest = &after[end + 1..];
                    continue;
                }
            };
            let p = self.0.get(provider).ok_or_else(|| {
                ConnectError::BadConfig(format!(
                    "{key}: no config provider named {provider:?} (known: {})",
                    self.0.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let value = p.get(path, name).map_err(|e| {
                ConnectError::BadConfig(format!("{key}: cannot resolve ${{{provider}:...}}: {e}"))
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Whether a value is exactly one provider reference (safe to show: it holds no secret).
pub fn is_reference(v: &str) -> bool {
    let v = v.trim();
    v.starts_with("${") && v.ends_with('}') && v[2..].contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;
    impl ConfigProvider for Fixed {
        fn get(&self, path: Option<&str>, key: &str) -> Result<String, String> {
            match (path, key) {
                (None, "USER") => Ok("alice".into()),
                (Some("/etc/db.properties"), "password") => Ok("s3cret".into()),
                _ => Err(format!("no {key}")),
            }
        }
    }

    #[test]
    fn references_resolve_and_errors_name_the_key() {
        let p = Providers::default()
            .with("env", Arc::new(Fixed))
            .with("file", Arc::new(Fixed));
        let mut raw = ConfigMap::new();
        raw.insert(
            "url".into(),
            "db://${env:USER}:${file:/etc/db.properties:password}@h".into(),
        );
        raw.insert("plain".into(), "no refs; ${not a ref} stays".into());
        let r = p.resolve(&raw).unwrap();
        assert_eq!(r["url"], "db://alice:s3cret@h");
        assert_eq!(r["plain"], "no refs; ${not a ref} stays");
        raw.insert("k".into(), "${vault:x}".into());
        let e = p.resolve(&raw).unwrap_err().to_string();
        assert!(e.starts_with("k: ") && e.contains("vault"), "{e}");
        raw.insert("k".into(), "${env:NOPE}".into());
        assert!(p.resolve(&raw).unwrap_err().to_string().contains("k: "));
        assert!(is_reference("${file:/a:b}") && !is_reference("x${env:A}"));
    }
}
