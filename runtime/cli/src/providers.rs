//! The config providers `weir up` registers: `${env:NAME}` (an environment variable) and
//! `${file:/path/to/file.properties:key}` (a key of a Java properties file), as Kafka's
//! EnvVarConfigProvider and FileConfigProvider.

use std::sync::Arc;

use weir_connect::{ConfigProvider, Providers};

#[derive(Debug)]
struct Env;

impl ConfigProvider for Env {
    fn get(&self, path: Option<&str>, key: &str) -> Result<String, String> {
        if path.is_some_and(|p| !p.is_empty()) {
            return Err("env takes no path: write ${env:NAME}".into());
        }
        std::env::var(key).map_err(|_| format!("environment variable {key} is not set"))
    }
}

#[derive(Debug)]
struct File;

impl ConfigProvider for File {
    fn get(&self, path: Option<&str>, key: &str) -> Result<String, String> {
        let path = path.ok_or("file needs a path: write ${file:/path/to/file.properties:key}")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let cut = line.find(['=', ':']).unwrap_or(line.len());
            if line[..cut].trim() == key {
                return Ok(line.get(cut + 1..).unwrap_or("").trim().to_string());
            }
        }
        Err(format!("{path} has no key {key}"))
    }
}

/// `env` and `file`.
pub fn builtin() -> Providers {
    Providers::default()
        .with("env", Arc::new(Env))
        .with("file", Arc::new(File))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_references() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("db.properties");
        std::fs::write(&f, "# creds\nuser = alice\npassword=s3cret\n").unwrap();
        let p = builtin();
        let mut raw = std::collections::BTreeMap::new();
        raw.insert(
            "connection.password".to_string(),
            format!("${{file:{}:password}}", f.display()),
        );
        raw.insert("home".to_string(), "${env:HOME}".to_string());
        let r = p.resolve(&raw).unwrap();
        assert_eq!(r["connection.password"], "s3cret");
        assert_eq!(r["home"], std::env::var("HOME").unwrap());
        raw.insert("x".into(), format!("${{file:{}:nope}}", f.display()));
        let e = p.resolve(&raw).unwrap_err().to_string();
        assert!(
            e.contains("x:") && e.contains("nope") && !e.contains("s3cret"),
            "{e}"
        );
    }
}
