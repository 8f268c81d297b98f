//! `datagen`: generates JSON records for demos and benchmarks.
//!
//! Keys: `topic` (required), `count` (records per connector, -1: no end), `rate` (records per
//! second per task, 0: as fast as the runtime polls), `keys` (distinct keys `k-0`.. `k-N-1`,
//! 0: null keys), `value.size` (bytes of each JSON value, at least the fields need).
//! Each value is `{"id":N,"key":"k-7","ts":<ms>,"pad":"..."}`. The source partition is
//! `{"generator":<task>}` and the offset `{"next":N}`, so a restarted task goes on counting
//! where its stored offset says. It declares `weir.value.format=json`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir_sdk::{
    BatchBuilder, Config, ConfigError, ConfigType, Descriptor, Error, Offsets, PluginKind,
    RecordData, Source,
};

/// Appends `n` in decimal.
fn push_int(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[derive(Debug)]
struct Settings {
    topic: String,
    count: i64,
    rate: u64,
    keys: u64,
    value_size: usize,
    task: u64,
    tasks: u64,
}

fn number(config: &Config, key: &str, default: i64) -> Result<i64, ConfigError> {
    match weir_sdk::config_get(config, key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError {
            key: key.into(),
            message: format!("must be a whole number, got {v:?}"),
        }),
    }
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut get = |k: &str, d: i64, min: i64| match number(config, k, d) {
            Ok(n) if n >= min => n,
            Ok(n) => {
                errors.push(ConfigError {
                    key: k.into(),
                    message: format!("must be at least {min}, got {n}"),
                });
                d
            }
            Err(e) => {
                errors.push(e);
                d
            }
        };
        let count = get("count", -1, -1);
        let rate = get("rate", 0, 0) as u64;
        let keys = get("keys", 0, 0) as u64;
        let value_size = get("value.size", 100, 0) as usize;
        let task = get("task.id", 0, 0) as u64;
        let tasks = get("task.count", 1, 1) as u64;
        let topic = weir_sdk::config_get(config, "topic")
            .unwrap_or("")
            .to_string();
        if topic.is_empty() {
            errors.push(ConfigError {
                key: "topic".into(),
                message: "required".into(),
            });
        }
        if errors.is_empty() {
            Ok(Settings {
                topic,
                count,
                rate,
                keys,
                value_size,
                task,
                tasks,
            })
        } else {
            Err(errors)
        }
    }

    /// This task's share of `count` (-1: no end).
    fn share(&self) -> i64 {
        if self.count < 0 {
            return -1;
        }
        let (c, n, t) = (self.count as u64, self.tasks, self.task);
        (c / n + u64::from(t < c % n)) as i64
    }
}

#[derive(Debug)]
struct Datagen {
    s: Settings,
    partition: Vec<u8>,
    /// The next record number of this task.
    next: u64,
    /// Where `next` stood when this instance opened, and when: the rate's origin.
    start: (u64, Instant),
    pad: String,
}

impl Source for Datagen {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "datagen",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Source,
            "Generates JSON records at a configurable rate, for demos and benchmarks",
        );
        let k = weir_sdk::config_key;
        d.config = vec![
            k("topic", ConfigType::String, true, None, "topic to write to"),
            k(
                "count",
                ConfigType::Long,
                false,
                Some("-1"),
                "records in all (-1: no end)",
            ),
            k(
                "rate",
                ConfigType::Long,
                false,
                Some("0"),
                "records per second per task (0: no limit)",
            ),
            k(
                "keys",
                ConfigType::Long,
                false,
                Some("0"),
                "distinct keys (0: null keys)",
            ),
            k(
                "value.size",
                ConfigType::Int,
                false,
                Some("100"),
                "bytes of each JSON value",
            ),
            k(
                "task.id",
                ConfigType::Int,
                false,
                Some("0"),
                "set by task-configs",
            ),
            k(
                "task.count",
                ConfigType::Int,
                false,
                Some("1"),
                "set by task-configs",
            ),
            k(
                "weir.value.format",
                ConfigType::String,
                false,
                Some("json"),
                "values are JSON",
            ),
        ];
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        Settings::parse(config).err().unwrap_or_default()
    }

    fn task_configs(config: Config, max_tasks: u32) -> Result<Vec<Config>, Error> {
        let n = max_tasks.max(1);
        Ok((0..n)
            .map(|i| {
                let mut c: Config = config
                    .iter()
                    .filter(|(k, _)| k != "task.id" && k != "task.count")
                    .cloned()
                    .collect();
                c.push(("task.id".into(), i.to_string()));
                c.push(("task.count".into(), n.to_string()));
                c
            })
            .collect())
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let partition = format!("{{\"generator\":{}}}", s.task).into_bytes();
        let next = committed
            .iter()
            .find(|(p, _)| *p == partition)
            .and_then(|(_, o)| serde_json::from_slice::<serde_json::Value>(o).ok())
            .and_then(|v| v.get("next").and_then(|n| n.as_u64()))
            .unwrap_or(0);
        Ok(Datagen {
            s,
            partition,
            next,
            start: (next, Instant::now()),
            pad: String::new(),
        })
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let mut n = max as u64;
        let share = self.s.share();
        if share >= 0 {
            n = n.min((share as u64).saturating_sub(self.next));
        }
        if self.s.rate > 0 {
            let due =
                self.start.0 + (self.start.1.elapsed().as_secs_f64() * self.s.rate as f64) as u64;
            n = n.min(due.saturating_sub(self.next));
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // One buffer per field, reused: no formatting machinery per record.
        let (mut value, mut key, mut offset) = (Vec::new(), Vec::new(), Vec::new());
        let mut ts_text = Vec::new();
        push_int(&mut ts_text, ts as u64);
        for _ in 0..n {
            let id = self.next * self.s.tasks + self.s.task;
            key.clear();
            if self.s.keys > 0 {
                key.extend_from_slice(b"k-");
                push_int(&mut key, id % self.s.keys);
            }
            value.clear();
            value.extend_from_slice(b"{\"id\":");
            push_int(&mut value, id);
            value.extend_from_slice(b",\"key\":");
            if key.is_empty() {
                value.extend_from_slice(b"null");
            } else {
                value.push(b'"');
                value.extend_from_slice(&key);
                value.push(b'"');
            }
            value.extend_from_slice(b",\"ts\":");
            value.extend_from_slice(&ts_text);
            value.extend_from_slice(b",\"pad\":\"");
            let room = self.s.value_size.saturating_sub(value.len() + 2);
            if self.pad.len() < room {
                self.pad = "x".repeat(room);
            }
            value.extend_from_slice(&self.pad.as_bytes()[..room]);
            value.extend_from_slice(b"\"}");
            self.next += 1;
            offset.clear();
            offset.extend_from_slice(b"{\"next\":");
            push_int(&mut offset, self.next);
            offset.push(b'}');
            out.push(&RecordData {
                key: (!key.is_empty()).then_some(key.as_slice()),
                value: Some(&value),
                topic: &self.s.topic,
                source_partition: Some(&self.partition),
                source_offset: Some(&offset),
                ..Default::default()
            });
        }
        Ok(())
    }
}

weir_sdk::export_source!(Datagen);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kv: &[(&str, &str)]) -> Config {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn count_is_split_over_tasks_and_keys_are_checked() {
        let shares: Vec<i64> = (0..3)
            .map(|t| {
                let c = config(&[
                    ("topic", "t"),
                    ("count", "10"),
                    ("task.id", &t.to_string()),
                    ("task.count", "3"),
                ]);
                Settings::parse(&c).unwrap().share()
            })
            .collect();
        assert_eq!(shares, [4, 3, 3]);
        let errors = Settings::parse(&config(&[("rate", "fast")])).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["rate", "topic"]);
        let configs = Datagen::task_configs(config(&[("topic", "t")]), 2).unwrap();
        let mut v = Vec::new();
        for n in [0, 7, 10, 18_446_744_073_709_551_615] {
            v.clear();
            push_int(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
        assert!(configs[1].contains(&("task.id".to_string(), "1".to_string())));
    }
}
