//! Counts from the committed offset up to `count`: record i has key `k<i>`, value
//! `{"n":<i>}`, source partition `counter` and source offset `<i>`. Acks are logged and kept
//! in host state.
use weir_sdk::{
    BatchBuilder, Config, ConfigType, Descriptor, Error, Level, Offsets, PluginKind, RecordData,
    Source,
};

struct Counter {
    topic: String,
    next: u64,
    count: u64,
}

impl Source for Counter {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "counter-source",
            "0.2.0",
            PluginKind::Source,
            "Counts, resuming where it was stored",
        );
        d.config.push(weir_sdk::config_key(
            "topic",
            ConfigType::String,
            true,
            None,
            "topic to write to",
        ));
        d.config.push(weir_sdk::config_key(
            "count",
            ConfigType::Int,
            false,
            Some("10"),
            "how many records in all",
        ));
        d
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let topic = weir_sdk::config_required(&config, "topic")?.to_string();
        let count = weir_sdk::config_get(&config, "count")
            .unwrap_or("10")
            .parse::<u64>()
            .map_err(|_| weir_sdk::invalid_config("count", "not an integer"))?;
        let next = committed
            .iter()
            .find(|(p, _)| p == b"counter")
            .and_then(|(_, o)| std::str::from_utf8(o).ok()?.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        Ok(Counter { topic, next, count })
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let end = (self.next + u64::from(max)).min(self.count);
        for i in self.next..end {
            let (key, value, offset) = (format!("k{i}"), format!("{{\"n\":{i}}}"), i.to_string());
            out.push(&RecordData {
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                headers: &[("source", Some(b"counter"))],
                topic: &self.topic,
                source_partition: Some(b"counter"),
                source_offset: Some(offset.as_bytes()),
                ..Default::default()
            });
        }
        self.next = end.max(self.next);
        Ok(())
    }

    fn ack(&mut self, stored: Offsets) {
        for (p, o) in stored {
            if p == b"counter" {
                weir_sdk::log(
                    Level::Info,
                    &format!("acked {}", String::from_utf8_lossy(&o)),
                );
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
