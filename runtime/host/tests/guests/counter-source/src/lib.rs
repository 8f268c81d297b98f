//! Counts from the committed offset up to `count`: record i has key `k<i>`, value
//! `{"n":<i>}`, source partition `counter` and source offset `<i>`. Acks are logged and kept
//! in host state.
use weir_sdk::{ConfigError, ConfigType, Descriptor, Error, Header, Level, Offsets, PluginKind, Record, Source};

struct Counter {
    topic: String,
    next: u64,
    count: u64,
}

impl Source for Counter {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor("counter-source", "0.1.0", PluginKind::Source, "Counts, resuming where it was stored");
        d.config = vec![
            weir_sdk::config_key("topic", ConfigType::String, true, None, "topic to write to"),
            weir_sdk::config_key("count", ConfigType::Int, false, Some("10"), "how many records in all"),
        ];
        d
    }

    fn open(config: Vec<(String, String)>, committed: Offsets) -> Result<Self, Error> {
        let topic = weir_sdk::config_required(&config, "topic")?.to_string();
        let count = weir_sdk::config_get(&config, "count")
            .unwrap_or("10")
            .parse::<u64>()
            .map_err(|_| Error::InvalidConfig(ConfigError { key: "count".into(), message: "not an integer".into() }))?;
        let next = committed
            .iter()
            .find(|(p, _)| p == b"counter")
            .and_then(|(_, o)| std::str::from_utf8(o).ok()?.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        Ok(Counter { topic, next, count })
    }

    fn poll(&mut self, max: u32) -> Result<Vec<Record>, Error> {
        let end = (self.next + u64::from(max)).min(self.count);
        let batch = (self.next..end)
            .map(|i| Record {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("{{\"n\":{i}}}").into_bytes()),
                headers: vec![Header { name: "source".into(), value: Some(b"counter".to_vec()) }],
                timestamp: 1_700_000_000_000 + i as i64,
                topic: self.topic.clone(),
                partition: None,
                position: None,
                source_partition: Some(b"counter".to_vec()),
                source_offset: Some(i.to_string().into_bytes()),
            })
            .collect();
        self.next = end.max(self.next);
        Ok(batch)
    }

    fn ack(&mut self, stored: Offsets) {
        for (p, o) in stored {
            if p == b"counter" {
                weir_sdk::log(Level::Info, &format!("acked {}", String::from_utf8_lossy(&o)));
                if let Err(e) = weir_sdk::state_set("acked", &o) {
                    weir_sdk::log(Level::Warn, &e);
                }
            }
        }
    }

    fn close(&mut self) {
        weir_sdk::log(Level::Info, "closed");
    }
}

weir_sdk::export_source!(Counter);
