//! The source's configuration: Kafka's FileStreamSource keys (`file`, `topic`, `batch.size`)
//! and Weir's directory mode (`directory`, `pattern`). Keys and defaults are declared once,
//! in [`keys`]; [`Settings::parse`] is both `validate` and what `open` reads.

use weir_sdk::{Config, ConfigError, ConfigKey, ConfigType};

use crate::glob;

pub const FILE: &str = "file";
pub const DIRECTORY: &str = "directory";
pub const PATTERN: &str = "pattern";
pub const TOPIC: &str = "topic";
pub const BATCH_SIZE: &str = "batch.size";

const DEFAULT_PATTERN: &str = "*";
const DEFAULT_BATCH_SIZE: u32 = 2000;

/// The keys the descriptor declares (the host refuses any other).
pub fn keys() -> Vec<ConfigKey> {
    let key = weir_sdk::config_key;
    vec![
        key(
            FILE,
            ConfigType::String,
            false,
            None,
            "The file to tail, one record per line (Kafka's FileStreamSource). Exactly one of file and directory.",
        ),
        key(
            DIRECTORY,
            ConfigType::String,
            false,
            None,
            "A directory whose files matching `pattern` are all tailed, new ones included. Exactly one of file and directory.",
        ),
        key(
            PATTERN,
            ConfigType::String,
            false,
            Some(DEFAULT_PATTERN),
            "With directory: which file names to read (*, ?, [a-z]; * does not match names starting with a dot).",
        ),
        key(
            TOPIC,
            ConfigType::String,
            true,
            None,
            "The topic to write the lines to.",
        ),
        key(
            BATCH_SIZE,
            ConfigType::Int,
            false,
            Some("2000"),
            "The most records one poll returns.",
        ),
    ]
}

/// What the source reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One file, by the path given.
    File(String),
    /// Every file of `dir` whose name matches `pattern`.
    Directory { dir: String, pattern: String },
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub target: Target,
    pub topic: String,
    pub batch_size: u32,
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl Settings {
    /// The settings, or every problem found (each naming its key).
    pub fn parse(config: &Config) -> Result<Settings, Vec<ConfigError>> {
        let get = |k: &str| weir_sdk::config_get(config, k).map(str::trim);
        let mut problems = Vec::new();
        let topic = match get(TOPIC) {
            Some(t) if !t.is_empty() => t.to_string(),
            Some(_) => {
                problems.push(error(TOPIC, "must not be empty"));
                String::new()
            }
            None => {
                problems.push(error(TOPIC, "required: the topic to write the lines to"));
                String::new()
            }
        };
        let batch_size = match get(BATCH_SIZE) {
            None => DEFAULT_BATCH_SIZE,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    problems.push(error(
                        BATCH_SIZE,
                        format!("must be a whole number of at least 1, got {v:?}"),
                    ));
                    DEFAULT_BATCH_SIZE
                }
            },
        };
        let pattern = get(PATTERN);
        let target = match (get(FILE), get(DIRECTORY)) {
            (Some(_), Some(_)) => {
                problems.push(error(
                    DIRECTORY,
                    "give either file (one file) or directory (its matching files), not both",
                ));
                None
            }
            (None, None) => {
                problems.push(error(
                    FILE,
                    "required: give file (the file to tail) or directory (to tail its matching files)",
                ));
                None
            }
            (Some(""), None) => {
                problems.push(error(FILE, "must not be empty"));
                None
            }
            (None, Some("")) => {
                problems.push(error(DIRECTORY, "must not be empty"));
                None
            }
            (Some(file), None) => {
                if pattern.is_some() {
                    problems.push(error(PATTERN, "is only used with directory, not with file"));
                }
                Some(Target::File(file.to_string()))
            }
            (None, Some(dir)) => {
                let pattern = pattern.unwrap_or(DEFAULT_PATTERN);
                if let Some(why) = glob::problem(pattern) {
                    problems.push(error(PATTERN, why));
                }
                Some(Target::Directory {
                    dir: normalize_dir(dir),
                    pattern: pattern.to_string(),
                })
            }
        };
        match target {
            Some(target) if problems.is_empty() => Ok(Settings {
                target,
                topic,
                batch_size,
            }),
            _ => Err(problems),
        }
    }
}

/// A directory path without trailing slashes (`/` stays `/`), so that `<dir>/<name>` is the
/// path of one of its files.
fn normalize_dir(dir: &str) -> String {
    let d = dir.trim_end_matches('/');
    if d.is_empty() && dir.starts_with('/') {
        "/".into()
    } else {
        d.into()
    }
}

/// The path of `name` in `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys_of(e: Vec<ConfigError>) -> Vec<String> {
        e.into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn kafka_config() {
        let s = Settings::parse(&cfg(&[
            ("file", "/tmp/test.txt"),
            ("topic", "connect-test"),
        ]))
        .unwrap();
        assert_eq!(s.target, Target::File("/tmp/test.txt".into()));
        assert_eq!(s.topic, "connect-test");
        assert_eq!(s.batch_size, 2000);
    }

    #[test]
    fn directory_config() {
        let s = Settings::parse(&cfg(&[
            ("directory", "/var/log/app/"),
            ("pattern", "*.log"),
            ("topic", "logs"),
            ("batch.size", "10"),
        ]))
        .unwrap();
        assert_eq!(
            s.target,
            Target::Directory {
                dir: "/var/log/app".into(),
                pattern: "*.log".into()
            }
        );
        assert_eq!(s.batch_size, 10);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/x", "a"), "/x/a");
    }

    #[test]
    fn problems_name_their_key() {
        assert_eq!(
            keys_of(Settings::parse(&cfg(&[])).unwrap_err()),
            ["topic", "file"]
        );
        let both = cfg(&[("file", "/a"), ("directory", "/b"), ("topic", "t")]);
        assert_eq!(keys_of(Settings::parse(&both).unwrap_err()), ["directory"]);
        let p = cfg(&[("file", "/a"), ("pattern", "*"), ("topic", "t")]);
        assert_eq!(keys_of(Settings::parse(&p).unwrap_err()), ["pattern"]);
        let p = cfg(&[("directory", "/a"), ("pattern", "[x"), ("topic", "t")]);
        assert_eq!(keys_of(Settings::parse(&p).unwrap_err()), ["pattern"]);
        let b = cfg(&[("file", "/a"), ("topic", "t"), ("batch.size", "0")]);
        assert_eq!(keys_of(Settings::parse(&b).unwrap_err()), ["batch.size"]);
    }
}
