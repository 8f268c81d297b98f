//! What Weir's change data capture connectors (postgres-source, sqlite-source) share:
//! Debezium's `snapshot.mode` values, the regular-expression lists of `*.include.list` and
//! `*.exclude.list`, the JSON form of bytes, SQL identifiers, owned row values, and parallel
//! snapshot plans (`parallel`). Plain types only: a connector maps the errors into its SDK's
//! `ConfigError`.

pub mod parallel;

use weir_sqlbuf::Value;

/// Debezium's `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// A snapshot when no offsets are stored, then the stream.
    Initial,
    /// No snapshot (`never` is Debezium 1.x's name).
    NoData,
    /// A snapshot, then nothing.
    InitialOnly,
    /// A snapshot when no offsets are stored or the change log cannot resume from them.
    WhenNeeded,
    /// A snapshot at every start.
    Always,
}

impl SnapshotMode {
    /// A `snapshot.mode` value, or why it is not one.
    pub fn parse(v: &str) -> Result<SnapshotMode, String> {
        Ok(match v {
            "initial" => SnapshotMode::Initial,
            "no_data" | "never" => SnapshotMode::NoData,
            "initial_only" => SnapshotMode::InitialOnly,
            "when_needed" => SnapshotMode::WhenNeeded,
            "always" => SnapshotMode::Always,
            other => {
                return Err(format!(
                    "{other:?} is not a snapshot mode (initial, no_data, initial_only, when_needed, always)"
                ));
            }
        })
    }
}

/// A comma-separated list of regular expressions, each anchored to the whole name.
pub fn patterns(list: &str) -> Result<Vec<regex_lite::Regex>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| {
            regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("{p:?} is not a regular expression: {e}"))
        })
        .collect()
}

/// Standard base64 with padding (Kafka Connect's JSON form of bytes).
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A quoted SQL identifier (PostgreSQL and SQLite).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A text value (none for anything else).
pub fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// An integer value (0 for anything else).
pub fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_modes_and_patterns_read_as_debezium_writes_them() {
        assert_eq!(SnapshotMode::parse("never"), Ok(SnapshotMode::NoData));
        assert_eq!(
            SnapshotMode::parse("when_needed"),
            Ok(SnapshotMode::WhenNeeded)
        );
        assert!(
            SnapshotMode::parse("sometimes")
                .unwrap_err()
                .contains("sometimes")
        );
        let p = patterns(" public\\.orders , inv.* ,").unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_match("public.orders") && !p[0].is_match("public.orders_old"));
        assert!(
            patterns("a(")
                .unwrap_err()
                .contains("not a regular expression")
        );
    }

    #[test]
    fn base64_matches_rfc4648_and_identifiers_are_quoted() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(text(Some(&Value::Text("x".into()))).as_deref(), Some("x"));
        assert_eq!(int(Some(&Value::Int(7))), 7);
        assert_eq!(int(None), 0);
    }
}
