//! The host with real guest components (built by build.rs from tests/guests). Records are
//! written and read through the batch layout (`weir_batch`), with an owned `Record` shim so
//! that expectations read plainly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_host::types::{Error, LogPosition, PluginKind};
use weir_host::weir_batch::{Batch, BatchBuilder, RecordData};
use weir_host::{Host, HostConfig, HostError, SinkTask, SourceTask, TaskConfig, TransformTask};

fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WEIR_GUESTS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    name: String,
    value: Option<Vec<u8>>,
}

/// A record with owned fields; `position` is where a sink's record was read from.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    timestamp: i64,
    topic: String,
    partition: Option<i32>,
    position: Option<LogPosition>,
    source_partition: Option<Vec<u8>>,
    source_offset: Option<Vec<u8>>,
}

fn encode(recs: &[Record]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in recs {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_deref()))
            .collect();
        let (topic, partition, offset) = match &r.position {
            Some(p) => (p.topic.as_str(), Some(p.partition), Some(p.offset)),
            None => (r.topic.as_str(), r.partition, None),
        };
        b.push(&RecordData {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
            topic,
            partition,
            offset,
            source_partition: r.source_partition.as_deref(),
            source_offset: r.source_offset.as_deref(),
        });
    }
    b.finish().unwrap()
}

fn decode(bytes: &[u8]) -> Vec<Record> {
    Batch::parse(bytes)
        .unwrap()
        .iter()
        .map(|r| Record {
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|h| Header {
                    name: h.name.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
            timestamp: r.timestamp(),
            topic: if r.offset().is_some() {
                String::new()
            } else {
                r.topic().to_string()
            },
            partition: r.partition().filter(|_| r.offset().is_none()),
            position: r.offset().map(|offset| LogPosition {
                topic: r.topic().to_string(),
                partition: r.partition().unwrap_or(-1),
                offset,
            }),
            source_partition: r.source_partition().map(<[u8]>::to_vec),
            source_offset: r.source_offset().map(<[u8]>::to_vec),
        })
        .collect()
}

trait TransformExt {
    fn apply_records(&mut self, recs: &[Record]) -> Result<Vec<Record>, HostError>;
}

impl TransformExt for TransformTask {
    fn apply_records(&mut self, recs: &[Record]) -> Result<Vec<Record>, HostError> {
        let input = encode(recs);
        let out = self.apply(&input)?;
        Ok(decode(&weir_host::output_batch(&input, out).unwrap()))
    }
}

trait SourceExt {
    fn poll_records(&mut self, max: u32) -> Result<Vec<Record>, HostError>;
}

impl SourceExt for SourceTask {
    fn poll_records(&mut self, max: u32) -> Result<Vec<Record>, HostError> {
        self.poll(max).map(|b| decode(&b))
    }
}

trait SinkExt {
    fn put_records(&mut self, recs: &[Record]) -> Result<(), HostError>;
}

impl SinkExt for SinkTask {
    fn put_records(&mut self, recs: &[Record]) -> Result<(), HostError> {
        self.put(&encode(recs))
    }
}

fn rec(i: usize, value: &str) -> Record {
    Record {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![Header {
            name: "h".into(),
            value: Some(b"v".to_vec()),
        }],
        timestamp: 1_700_000_000_000 + i as i64,
        topic: String::new(),
        partition: None,
        position: None,
        source_partition: None,
        source_offset: None,
    }
}

fn host(memory: usize, deadline: Duration) -> Host {
    Host::new(HostConfig {
        cache_dir: None,
        memory_limit: memory,
        call_deadline: deadline,
    })
    .unwrap()
}

fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn identity_and_describe() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("identity")).unwrap();
    let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let d = t.describe().unwrap();
    assert_eq!(
        (d.name.as_str(), d.kind),
        ("identity", PluginKind::Transform)
    );
    let batch: Vec<Record> = (0..1000).map(|i| rec(i, &format!("value-{i}"))).collect();
    assert_eq!(t.apply_records(&batch).unwrap(), batch);
    assert_eq!(t.apply_records(&[]).unwrap(), vec![]);
}

#[test]
fn json_rewrite_config_and_bad_records() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("json-rewrite")).unwrap();
    let missing = p
        .transform(&h, &cfg(&[("from", "a")]), &TaskConfig::default())
        .unwrap_err();
    assert!(
        matches!(&missing, HostError::BadConfig { problems, .. } if problems == &["to: required".to_string()]),
        "{missing:?}"
    );
    let mut t = p
        .transform(
            &h,
            &cfg(&[("from", "name"), ("to", "full_name")]),
            &TaskConfig::default(),
        )
        .unwrap();
    let out = t
        .apply_records(&[rec(0, r#"{"name":"ada","age":36}"#), rec(1, r#"{"age":1}"#)])
        .unwrap();
    assert_eq!(
        out[0].value.as_deref(),
        Some(&br#"{"full_name":"ada","age":36}"#[..])
    );
    assert_eq!(out[1].value.as_deref(), Some(&br#"{"age":1}"#[..]));
    assert_eq!(out[0].headers, rec(0, "").headers);
    let bad = t
        .apply_records(&[rec(0, "{}"), rec(1, "[1,2]")])
        .unwrap_err();
    assert!(
        matches!(&bad, HostError::Plugin { error: Error::BadRecord(b), .. } if b.index == 1),
        "{bad:?}"
    );
    // An expected error does not poison the task.
    assert!(t.apply_records(&[rec(0, "{}")]).is_ok());
}

#[test]
fn state_and_logs_are_per_task() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("stateful")).unwrap();
    let (mut a, mut b) = (
        p.transform(&h, &[], &TaskConfig::default()).unwrap(),
        p.transform(&h, &[], &TaskConfig::default()).unwrap(),
    );
    let seq =
        |r: &Record| String::from_utf8(r.headers.last().unwrap().value.clone().unwrap()).unwrap();
    assert_eq!(
        a.apply_records(&[rec(0, "x"), rec(1, "y")])
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        ["0", "1"]
    );
    assert_eq!(
        a.apply_records(&[rec(2, "z")])
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        ["2"]
    );
    assert_eq!(
        b.apply_records(&[rec(0, "x")])
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        ["0"]
    );
}

/// Each misbehaving plugin fails its own task with a precise error while a healthy task on
/// another thread finishes its work.
#[test]
fn isolation_trap_loop_and_memory() {
    let h = std::sync::Arc::new(host(16 << 20, Duration::from_millis(300)));
    let healthy = {
        let h = h.clone();
        std::thread::spawn(move || {
            let p = h.load(&guest("identity")).unwrap();
            let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
            let batch: Vec<Record> = (0..100).map(|i| rec(i, "ok")).collect();
            for _ in 0..200 {
                assert_eq!(t.apply_records(&batch).unwrap().len(), 100);
            }
        })
    };

    let mut trap = h
        .load(&guest("trap"))
        .unwrap()
        .transform(&h, &[], &TaskConfig::default())
        .unwrap();
    let e = trap.apply_records(&[rec(0, "x")]).unwrap_err();
    match &e {
        HostError::Trap {
            plugin,
            function,
            message,
        } => {
            assert_eq!((plugin.as_str(), function.as_str()), ("trap", "apply"));
            assert!(message.contains("unreachable"), "{message}");
            // The panic message the plugin wrote to stderr explains the trap.
            assert!(
                message.contains("deliberate panic in the trap fixture"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(trap.is_poisoned());
    assert!(matches!(
        trap.apply_records(&[]),
        Err(HostError::Poisoned { .. })
    ));
    // A panic in the SDK's per-record function names the record it was at.
    let mut at = h
        .load(&guest("trap"))
        .unwrap()
        .transform(&h, &cfg(&[("on", "boom")]), &TaskConfig::default())
        .unwrap();
    let e = at
        .apply_records(&[rec(0, "a"), rec(1, "b"), rec(2, "boom"), rec(3, "c")])
        .unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { message, .. } if message.contains("deliberate panic at a record")
            && message.contains("the function for record 2 of the batch")),
        "{e}"
    );

    let mut spin = h
        .load(&guest("spin"))
        .unwrap()
        .transform(&h, &[], &TaskConfig::default())
        .unwrap();
    let started = Instant::now();
    let e = spin.apply_records(&[rec(0, "x")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { message, .. } if message.contains("deadline")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "deadline not enforced: {:?}",
        started.elapsed()
    );

    let mut hog = h
        .load(&guest("hog"))
        .unwrap()
        .transform(&h, &[], &TaskConfig::default())
        .unwrap();
    let batch: Vec<Record> = (0..64).map(|i| rec(i, "x")).collect();
    let e = hog.apply_records(&batch).unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { plugin, message, .. } if plugin == "hog" && message.contains("memory limit exceeded")),
        "{e:?}"
    );

    healthy.join().expect("the healthy task finished its work");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let first = Host::new(config.clone()).unwrap();
    first.load(&guest("identity")).unwrap();
    assert_eq!(first.compilations(), 1);
    first.load(&guest("identity")).unwrap();
    assert_eq!(
        first.compilations(),
        1,
        "the second load in one host must not compile"
    );
    drop(first);
    let second = Host::new(config).unwrap();
    let p = second.load(&guest("identity")).unwrap();
    assert_eq!(
        second.compilations(),
        0,
        "a restart must load from the cache"
    );
    assert_eq!(
        p.transform(&second, &[], &TaskConfig::default())
            .unwrap()
            .apply_records(&[rec(0, "x")])
            .unwrap(),
        vec![rec(0, "x")]
    );
}

#[test]
fn not_a_component_is_a_clear_error() {
    let h = host(16 << 20, Duration::from_secs(1));
    let e = h.load_bytes("junk", b"definitely not wasm").unwrap_err();
    assert!(
        matches!(&e, HostError::Invalid { plugin, .. } if plugin == "junk"),
        "{e:?}"
    );
    let missing = h
        .load(std::path::Path::new("/nonexistent/x.wasm"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/x.wasm"),
        "{missing}"
    );
}

#[test]
fn a_component_of_another_world_is_refused_with_its_exports() {
    let h = host(16 << 20, Duration::from_secs(1));
    let p = h.load(&guest("not-a-transform")).unwrap();
    let e = p.transform(&h, &[], &TaskConfig::default()).unwrap_err();
    match &e {
        HostError::WrongWorld {
            plugin, interface, ..
        } => {
            assert_eq!(plugin, "not_a_transform");
            assert_eq!(interface, "weir:connector/transformer@0.2.2");
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("does not export weir:connector/transformer@0.2.2"),
        "{e}"
    );
}

fn header<'a>(r: &'a Record, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
        .map(|v| std::str::from_utf8(v).unwrap())
        .unwrap_or("")
}

fn text(b: &Option<Vec<u8>>) -> &str {
    std::str::from_utf8(b.as_deref().unwrap_or_default()).unwrap()
}

fn offsets(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(p, o)| (p.as_bytes().to_vec(), o.as_bytes().to_vec()))
        .collect()
}

#[test]
fn source_world_polls_acks_and_resumes_from_committed_offsets() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("counter-source")).unwrap();
    assert_eq!(p.kind(&h), Some(PluginKind::Source));
    let d = p.describe(&h).unwrap();
    assert_eq!((d.name.as_str(), d.config.len()), ("counter-source", 2));

    let e = p
        .source(&h, &cfg(&[("count", "3")]), &vec![], &TaskConfig::default())
        .unwrap_err();
    assert!(
        e.to_string().ends_with("invalid config: topic: required"),
        "{e}"
    );

    let config = cfg(&[("topic", "numbers"), ("count", "5")]);
    let mut s = p
        .source(&h, &config, &vec![], &TaskConfig::default())
        .unwrap();
    let first = s.poll_records(3).unwrap();
    let expected = Record {
        key: Some(b"k0".to_vec()),
        value: Some(br#"{"n":0}"#.to_vec()),
        headers: vec![Header {
            name: "source".into(),
            value: Some(b"counter".to_vec()),
        }],
        timestamp: 1_700_000_000_000,
        topic: "numbers".into(),
        partition: None,
        position: None,
        source_partition: Some(b"counter".to_vec()),
        source_offset: Some(b"0".to_vec()),
    };
    assert_eq!(first[0], expected);
    let values: Vec<&str> = first.iter().map(|r| text(&r.value)).collect();
    assert_eq!(values, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    s.ack(&offsets(&[("counter", "2")])).unwrap();
    let rest = s.poll_records(10).unwrap();
    assert_eq!(rest.len(), 2);
    assert!(s.poll_records(10).unwrap().is_empty(), "exhausted");
    s.close().unwrap();

    // Reopened where the log stored it: the next number after the committed offset.
    let mut again = p
        .source(
            &h,
            &config,
            &offsets(&[("counter", "3")]),
            &TaskConfig::default(),
        )
        .unwrap();
    let resumed = again.poll_records(10).unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(text(&resumed[0].value), r#"{"n":4}"#);
}

#[test]
fn source_recycling_resumes_at_the_stored_offset() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("counter-source")).unwrap();
    let tc = TaskConfig {
        recycle_after_calls: Some(3),
        ..TaskConfig::default()
    };
    let mut s = p
        .source(&h, &cfg(&[("topic", "t"), ("count", "20")]), &vec![], &tc)
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = s.poll_records(2).unwrap();
        if batch.is_empty() {
            break;
        }
        let last = batch.last().unwrap().source_offset.clone().unwrap();
        seen.extend(batch.iter().map(|r| text(&r.value).to_string()));
        s.ack(&vec![(b"counter".to_vec(), last)]).unwrap();
    }
    let want: Vec<String> = (0..20).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(seen, want, "nothing skipped or repeated across recycles");
    assert!(s.recycled() >= 3, "recycled {} times", s.recycled());
}

/// Recycling waits until every polled record is acked: with a batch in flight the instance
/// stays, and the fresh one resumes exactly after the stored offset.
#[test]
fn source_recycling_waits_for_in_flight_records() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("counter-source")).unwrap();
    let tc = TaskConfig {
        recycle_after_calls: Some(2),
        ..TaskConfig::default()
    };
    let mut s = p
        .source(&h, &cfg(&[("topic", "t"), ("count", "12")]), &vec![], &tc)
        .unwrap();
    let mut seen = Vec::new();
    let mut polls = 0;
    loop {
        // Two batches in flight, then an ack of the first only: no recycle may happen before
        // the second is acked too.
        let a = s.poll_records(2).unwrap();
        let b = s.poll_records(2).unwrap();
        polls += 2;
        if a.is_empty() {
            break;
        }
        let before = s.recycled();
        s.ack(&vec![(
            b"counter".to_vec(),
            a.last().unwrap().source_offset.clone().unwrap(),
        )])
        .unwrap();
        assert_eq!(s.recycled(), before);
        seen.extend(a.iter().chain(&b).map(|r| text(&r.value).to_string()));
        if let Some(last) = b.last() {
            s.ack(&vec![(
                b"counter".to_vec(),
                last.source_offset.clone().unwrap(),
            )])
            .unwrap();
        }
        assert!(polls < 100, "the source never ran dry");
    }
    let want: Vec<String> = (0..12).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(seen, want, "nothing skipped or repeated across recycles");
    assert!(s.recycled() >= 2, "recycled {} times", s.recycled());
}

/// A sink is recycled only once everything it was given is flushed; the file holds every
/// record once, in order.
#[test]
fn sink_recycling_waits_for_a_covering_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tc, c) = TaskConfig::from_config(&cfg(&[
        ("weir.dirs", &format!("{}:/out", dir.path().display())),
        ("path", "/out/r.txt"),
    ]))
    .unwrap();
    tc.recycle_after_calls = Some(2);
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("file-sink")).unwrap();
    let mut sink = p.sink(&h, &c, &[], &tc).unwrap();
    let positioned = |offset: i64| {
        let mut r = rec(offset as usize, &format!("v{offset}"));
        r.position = Some(LogPosition {
            topic: "t".into(),
            partition: 0,
            offset,
        });
        r
    };
    let at = |offset: i64| LogPosition {
        topic: "t".into(),
        partition: 0,
        offset,
    };
    let mut want = String::new();
    for round in 0..4i64 {
        let (x, y) = (round * 2, round * 2 + 1);
        sink.put_records(&[positioned(x)]).unwrap();
        sink.put_records(&[positioned(y)]).unwrap();
        let before = sink.recycled();
        // A flush that does not cover the second put: the buffer must survive.
        sink.flush(&[at(x)]).unwrap();
        sink.put_records(&[]).unwrap();
        assert_eq!(sink.recycled(), before, "recycled with records unflushed");
        sink.flush(&[at(y)]).unwrap();
        want.push_str(&format!("t/0/{x} k{x} v{x}\nt/0/{y} k{y} v{y}\n"));
    }
    sink.put_records(&[]).unwrap();
    assert!(sink.recycled() >= 2, "recycled {} times", sink.recycled());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("r.txt")).unwrap(),
        want
    );
}

#[test]
fn task_state_is_bounded() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("stateful")).unwrap();
    let mut t = p
        .transform(&h, &cfg(&[("fill", "true")]), &TaskConfig::default())
        .unwrap();
    let e = t.apply_records(&[rec(0, "x")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { error: Error::Fatal(m), .. } if m.contains("over its 64 MiB limit")),
        "{e:?}"
    );
}

#[test]
fn sink_world_writes_into_its_granted_directory_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (tc, plugin_cfg) = TaskConfig::from_config(&cfg(&[
        ("weir.dirs", &format!("{}:/out", dir.path().display())),
        ("path", "/out/records.txt"),
    ]))
    .unwrap();
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("file-sink")).unwrap();
    let mut sink = p.sink(&h, &plugin_cfg, &[], &tc).unwrap();
    let mut batch: Vec<Record> = (0..3).map(|i| rec(i, &format!("v{i}"))).collect();
    for (i, r) in batch.iter_mut().enumerate() {
        r.position = Some(LogPosition {
            topic: "orders".into(),
            partition: 1,
            offset: 10 + i as i64,
        });
    }
    batch[2].key = None;
    sink.put_records(&batch).unwrap();
    let file = dir.path().join("records.txt");
    assert!(!file.exists(), "nothing is written before flush");
    sink.flush(&[LogPosition {
        topic: "orders".into(),
        partition: 1,
        offset: 12,
    }])
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "orders/1/10 k0 v0\norders/1/11 k1 v1\norders/1/12 - v2\n"
    );
    let e = sink.put_records(&[rec(0, "no position")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { function, error: Error::BadRecord(b), .. } if function == "put" && b.index == 0),
        "{e:?}"
    );
    sink.close().unwrap();

    // Without the grant the same sink cannot write anywhere.
    let mut blind = p
        .sink(
            &h,
            &cfg(&[("path", "/out/records.txt")]),
            &[],
            &TaskConfig::default(),
        )
        .unwrap();
    blind.put_records(&batch).unwrap();
    let e = blind.flush(&[]).unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { error: Error::Retriable(m), .. } if m.starts_with("/out/records.txt:")),
        "{e:?}"
    );
}

/// A sink may report less than it was asked to flush (only what it made durable), never more.
#[test]
fn sink_flush_reports_only_what_is_durable_and_never_past_what_was_asked() {
    let dir = tempfile::tempdir().unwrap();
    let at = |partition: i32, offset: i64| LogPosition {
        topic: "t".into(),
        partition,
        offset,
    };
    let positioned = |partition: i32, offset: i64| {
        let mut r = rec(offset as usize, "v");
        r.position = Some(at(partition, offset));
        r
    };
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("file-sink")).unwrap();
    let open = |durable: &str| {
        let (tc, c) = TaskConfig::from_config(&cfg(&[
            ("weir.dirs", &format!("{}:/out", dir.path().display())),
            ("path", "/out/r.txt"),
            ("durable", durable),
        ]))
        .unwrap();
        p.sink(&h, &c, &[], &tc).unwrap()
    };

    let mut first = open("first");
    first
        .put_records(&[positioned(0, 4), positioned(1, 9)])
        .unwrap();
    let durable = first.flush(&[at(0, 4), at(1, 9)]).unwrap();
    assert_eq!(
        durable,
        vec![at(0, 4)],
        "only the first position is reported"
    );

    let mut past = open("past");
    past.put_records(&[positioned(0, 5)]).unwrap();
    let e = past.flush(&[at(0, 5)]).unwrap_err();
    assert!(
        matches!(&e, HostError::BadBatch { function, message, .. } if function == "flush" && message.contains("t/0/6 durable, which is past what was asked (5)")),
        "{e}"
    );

    let (tc, c) =
        TaskConfig::from_config(&cfg(&[("path", "/out/r.txt"), ("durable", "some")])).unwrap();
    let e = p.sink(&h, &c, &[], &tc).unwrap_err();
    assert!(
        e.to_string()
            .contains("durable: must be all, first or past"),
        "{e}"
    );
}

/// Serves `body` with status 200 to one request on a local port.
fn http_server(body: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, handle)
}

/// A plugin reading outside its granted directory and one calling a host that is not allowed
/// each get their precise error, while a healthy task on another thread finishes its work.
#[test]
fn isolation_files_and_http_with_a_healthy_neighbour() {
    let h = std::sync::Arc::new(host(64 << 20, Duration::from_secs(5)));
    let healthy = {
        let h = h.clone();
        std::thread::spawn(move || {
            let p = h.load(&guest("identity")).unwrap();
            let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
            let batch: Vec<Record> = (0..100).map(|i| rec(i, "ok")).collect();
            for _ in 0..200 {
                assert_eq!(t.apply_records(&batch).unwrap(), batch);
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "granted").unwrap();
    let grant = format!("{}:/data:ro", dir.path().display());
    let reader = h.load(&guest("read-file")).unwrap();
    let read = |path: &str| {
        let (tc, c) =
            TaskConfig::from_config(&cfg(&[("weir.dirs", &grant), ("path", path)])).unwrap();
        reader.transform(&h, &c, &tc).unwrap().apply_records(&[])
    };
    assert_eq!(text(&read("/data/ok.txt").unwrap()[0].value), "granted");
    for outside in ["/etc/hostname", "/data/../etc/hostname", "../etc/hostname"] {
        let e = read(outside).unwrap_err();
        assert!(
            matches!(&e, HostError::Plugin { error: Error::Fatal(m), .. } if m.starts_with(&format!("{outside}: "))),
            "{outside}: {e:?}"
        );
    }

    // No capability grants sockets: a plugin cannot connect anywhere, even to a listening
    // local port (raw TCP would bypass the HTTP allow-list).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let e = h
        .load(&guest("socket"))
        .unwrap()
        .transform(&h, &cfg(&[("addr", &addr)]), &TaskConfig::default())
        .unwrap()
        .apply_records(&[])
        .unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { error: Error::Retriable(m), .. } if m.starts_with("refused: ")),
        "{e:?}"
    );
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );

    let (port, server) = http_server("hello from the allowed host");
    let getter = h.load(&guest("http-get")).unwrap();
    let get = |allow: &str| {
        let (tc, c) = TaskConfig::from_config(&cfg(&[
            ("weir.http.allow", allow),
            ("url", &format!("http://127.0.0.1:{port}/x")),
        ]))
        .unwrap();
        getter.transform(&h, &c, &tc).unwrap().apply_records(&[])
    };
    let ok = get(&format!("127.0.0.1:{port}")).unwrap();
    assert_eq!(text(&ok[0].value), "hello from the allowed host");
    assert_eq!(header(&ok[0], "status"), "200");
    let e = get("example.com").unwrap_err();
    let want = format!(
        "denied: 127.0.0.1:{port} is not in this connector's weir.http.allow (it allows example.com)"
    );
    assert!(
        matches!(&e, HostError::Plugin { error: Error::Fatal(m), .. } if *m == want),
        "{e:?}"
    );
    let e = get("").unwrap_err();
    assert!(e.to_string().contains("it allows none"), "{e}");
    server.join().unwrap();

    // A name that resolves to a loopback address is refused even when allow-listed by name
    // (only the address itself allows it), so an allowed name cannot point at internal
    // services. The machine's /etc/hosts maps some name besides localhost to 127.x.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    let name = hosts
        .lines()
        .filter(|l| l.starts_with("127."))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|n| *n != "localhost" && !n.contains("localhost"))
        .expect("/etc/hosts names a loopback host besides localhost");
    let (tc, c) = TaskConfig::from_config(&cfg(&[
        ("weir.http.allow", name),
        ("url", &format!("http://{name}:{port}/x")),
    ]))
    .unwrap();
    let e = getter
        .transform(&h, &c, &tc)
        .unwrap()
        .apply_records(&[])
        .unwrap_err();
    assert!(e.to_string().contains("a private address"), "{e}");

    healthy.join().expect("the healthy task finished its work");
}

#[test]
fn watch_reports_changes_under_a_granted_directory_only() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("file-watch")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grant = format!("{}:/in", dir.path().display());
    let (tc, c) = TaskConfig::from_config(&cfg(&[("weir.dirs", &grant), ("dir", "/in")])).unwrap();
    let mut s = p.source(&h, &c, &vec![], &tc).unwrap();
    std::fs::write(dir.path().join("new.txt"), "x").unwrap();
    std::fs::remove_file(dir.path().join("new.txt")).unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events.iter().any(|e: &String| e == "removed /in/new.txt") && Instant::now() < deadline {
        events.extend(
            s.poll_records(100)
                .unwrap()
                .iter()
                .map(|r| text(&r.value).to_string()),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        events.first().map(String::as_str),
        Some("created /in/new.txt"),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("removed /in/new.txt"),
        "{events:?}"
    );

    // A symlink out of the grant is not followed by a recursive watch: changes behind it are
    // never reported.
    let outside = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("esc")).unwrap();
    let grant2 = format!("{}:/in", root.path().display());
    let (tc2, c2) =
        TaskConfig::from_config(&cfg(&[("weir.dirs", &grant2), ("dir", "/in")])).unwrap();
    let mut s2 = p.source(&h, &c2, &vec![], &tc2).unwrap();
    std::fs::write(outside.path().join("secret.txt"), "x").unwrap();
    std::fs::write(root.path().join("ok.txt"), "x").unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|e: &String| e == "created /in/ok.txt") && Instant::now() < deadline {
        seen.extend(
            s2.poll_records(100)
                .unwrap()
                .iter()
                .map(|r| text(&r.value).to_string()),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    seen.extend(
        s2.poll_records(100)
            .unwrap()
            .iter()
            .map(|r| text(&r.value).to_string()),
    );
    assert!(seen.iter().any(|e| e == "created /in/ok.txt"), "{seen:?}");
    assert!(!seen.iter().any(|e| e.contains("secret")), "{seen:?}");

    let (tc, c) = TaskConfig::from_config(&cfg(&[("weir.dirs", &grant), ("dir", "/etc")])).unwrap();
    let e = p.source(&h, &c, &vec![], &tc).unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { function, error: Error::Fatal(m), .. } if function == "open" && m == "/etc is not under a directory granted to this connector"),
        "{e:?}"
    );
}

#[test]
fn a_leaking_plugin_is_recycled_above_its_memory_threshold() {
    let h = host(24 << 20, Duration::from_secs(5));
    let p = h.load(&guest("leaky")).unwrap();
    // Without recycling, 1 MiB a call runs into the 24 MiB cap.
    let mut plain = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let failed = (0..40).find_map(|_| plain.apply_records(&[rec(0, "x")]).err());
    assert!(
        matches!(&failed, Some(HostError::Trap { message, .. }) if message.contains("memory limit exceeded")),
        "{failed:?}"
    );

    let tc = TaskConfig {
        recycle_above_memory: Some(12 << 20),
        ..TaskConfig::default()
    };
    let mut t = p.transform(&h, &[], &tc).unwrap();
    let mut instance_calls = Vec::new();
    for call in 1..=40 {
        let out = t.apply_records(&[rec(0, "x")]).unwrap();
        assert_eq!(
            header(&out[0], "task-calls"),
            call.to_string(),
            "state survives recycling"
        );
        instance_calls.push(header(&out[0], "instance-calls").parse::<u32>().unwrap());
        assert!(t.memory_used() <= 14 << 20, "{} bytes", t.memory_used());
    }
    assert!(t.recycled() >= 3, "recycled {} times", t.recycled());
    assert!(
        instance_calls.contains(&1)
            && instance_calls.iter().filter(|&&c| c == 1).count() as u64 == t.recycled() + 1
    );
}

#[test]
fn a_component_built_against_another_contract_version_is_refused() {
    let h = host(16 << 20, Duration::from_secs(1));
    let p = h.load(&guest("old-contract")).unwrap();
    let e = p.transform(&h, &[], &TaskConfig::default()).unwrap_err();
    assert!(
        matches!(&e, HostError::VersionMismatch { found, .. } if found == "0.1.0"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "plugin old_contract was built against weir:connector@0.1.0; this host implements weir:connector@0.2.2 (weir:connector/transformer@0.1.0)"
    );
    assert!(p.describe(&h).is_err());
}

/// WASI's synchronous bindings block on their own runtime: a plugin called from a tokio
/// worker must still work (the host steps out of the async context), and a current-thread
/// runtime gets a clear error instead of a panic.
#[test]
fn plugins_can_be_called_from_inside_an_async_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (tc, c) = TaskConfig::from_config(&cfg(&[
        ("weir.dirs", &format!("{}:/out", dir.path().display())),
        ("path", "/out/x.txt"),
    ]))
    .unwrap();
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("file-sink")).unwrap();
    let mut batch = vec![rec(0, "v0")];
    batch[0].position = Some(LogPosition {
        topic: "t".into(),
        partition: 0,
        offset: 0,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(async move {
            let mut sink = p.sink(&h, &c, &[], &tc).unwrap();
            sink.put_records(&batch).unwrap();
            sink.flush(&[]).unwrap();
        })
        .await
        .unwrap();
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x.txt")).unwrap(),
        "t/0/0 k0 v0\n"
    );

    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("identity")).unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let e = current.block_on(async { p.transform(&h, &[], &TaskConfig::default()) });
    assert!(
        matches!(&e, Err(HostError::Internal(m)) if m.contains("spawn_blocking")),
        "{e:?}"
    );
}

/// The SDK's template project builds (build.rs) and runs as its comments say.
#[test]
fn the_sdk_template_builds_and_runs() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("my-transform")).unwrap();
    let e = p
        .transform(&h, &[], &TaskConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("invalid config: header: required"), "{e}");
    let mut t = p
        .transform(
            &h,
            &cfg(&[("header", "via"), ("value", "weir")]),
            &TaskConfig::default(),
        )
        .unwrap();
    let out = t.apply_records(&[rec(0, "x")]).unwrap();
    assert_eq!(header(&out[0], "via"), "weir");
    assert_eq!(out[0].headers.len(), 2);
}

/// A plugin blocked in a host call (an hour's sleep) is woken at its call deadline and
/// interrupted there, not left holding its thread.
#[test]
fn a_sleeping_plugin_is_stopped_at_its_call_deadline() {
    let h = host(64 << 20, Duration::from_millis(300));
    let p = h.load(&guest("sleeper")).unwrap();
    let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let started = Instant::now();
    let e = t.apply_records(&[rec(0, "x")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { function, message, .. } if function == "apply" && message.contains("deadline")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slept past the deadline: {:?}",
        started.elapsed()
    );
}

/// When the fresh instance of a recycle cannot be opened, the task fails: it never goes on
/// with an instance that was not opened.
#[test]
fn a_failed_reopen_after_recycling_fails_the_task() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("stateful")).unwrap();
    let tc = TaskConfig {
        recycle_after_calls: Some(1),
        ..TaskConfig::default()
    };
    let mut t = p.transform(&h, &cfg(&[("once", "true")]), &tc).unwrap();
    assert_eq!(t.apply_records(&[rec(0, "x")]).unwrap().len(), 1);
    let e = t.apply_records(&[rec(1, "y")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Plugin { function, error: Error::Fatal(m), .. } if function == "open" && m == "opened twice"),
        "{e:?}"
    );
    assert!(t.is_poisoned());
    assert!(matches!(
        t.apply_records(&[]),
        Err(HostError::Poisoned { .. })
    ));
}

/// A memory cap below what the component needs to start is an instantiation error that says
/// so, not "invalid component".
#[test]
fn a_memory_cap_below_the_initial_memory_is_an_instantiation_error() {
    let h = host(64 << 10, Duration::from_secs(5));
    let e = h
        .load(&guest("identity"))
        .unwrap()
        .transform(&h, &[], &TaskConfig::default())
        .unwrap_err();
    assert!(
        matches!(&e, HostError::Instantiate { message, .. } if message.contains("memory limit exceeded")),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("plugin identity could not be instantiated: "),
        "{e}"
    );
}

#[test]
fn only_0_2_x_up_to_this_host_is_supported() {
    assert!(weir_host::version_supported("0.2.0"));
    assert!(weir_host::version_supported("0.2.1"));
    assert!(weir_host::version_supported("0.2.2"));
    for v in ["0.1.0", "0.2.3", "0.3.0", "1.2.0", "0.2", "x"] {
        assert!(!weir_host::version_supported(v), "{v}");
    }
}

/// Keeping every record costs no copy back (`passthrough`), dropping some costs an index list
/// (`select`), and only a change ships a new batch.
#[test]
fn outputs_are_passthrough_select_or_a_new_batch() {
    let h = host(64 << 20, Duration::from_secs(5));
    let input = encode(&(0..5).map(|i| rec(i, "v")).collect::<Vec<_>>());
    let run = |name: &str| {
        let p = h.load(&guest(name)).unwrap();
        p.transform(&h, &[], &TaskConfig::default())
            .unwrap()
            .apply(&input)
            .unwrap()
    };
    assert_eq!(run("identity"), weir_host::Output::Passthrough);
    assert_eq!(run("filter"), weir_host::Output::Select(vec![0, 2, 4]));
    let weir_host::Output::Replace(b) = run("add-header") else {
        panic!("add-header replaces")
    };
    let out = decode(&b);
    assert_eq!(out.len(), 5);
    assert_eq!(
        out[3].headers.last(),
        Some(&Header {
            name: "processed".into(),
            value: Some(b"weir".to_vec())
        })
    );
}

/// A plugin that returns a buffer lying about its lengths, or selects a record that does not
/// exist, fails its call with the field named; nothing of it is read, and another task of the
/// same host goes on.
#[test]
fn a_malformed_batch_from_a_plugin_fails_the_call_with_the_field_named() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("corrupt")).unwrap();
    let input = encode(&[rec(0, "a"), rec(1, "b")]);
    let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let e = t.apply(&input).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin corrupt returned a malformed batch from apply: record 0: value (offset 0, length 1000000) ends past the data arena (6 bytes)"
    );
    let mut t = p
        .transform(&h, &cfg(&[("mode", "select")]), &TaskConfig::default())
        .unwrap();
    let e = t.apply(&input).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "returned a malformed batch from apply: select names record 7, but the input has 2"
        ),
        "{e}"
    );
    let mut healthy = h
        .load(&guest("identity"))
        .unwrap()
        .transform(&h, &[], &TaskConfig::default())
        .unwrap();
    assert_eq!(
        healthy.apply_records(&[rec(0, "x")]).unwrap(),
        vec![rec(0, "x")]
    );
}

/// Configs are checked against the descriptor before the plugin sees them.
#[test]
fn a_config_with_a_typo_or_a_bad_type_is_refused_before_open() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("stateful")).unwrap();
    let e = p
        .transform(
            &h,
            &cfg(&[("onse", "true"), ("fill", "maybe")]),
            &TaskConfig::default(),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "plugin stateful: invalid config: onse: unknown key (did you mean once?); fill: not true or false (got \"maybe\")"
    );
}

/// A sink is opened with the committed positions, and what `flush` reports durable is what
/// may be committed; a report past what was asked is refused.
#[test]
fn a_sink_sees_its_committed_positions_and_reports_durable_ones() {
    let h = host(64 << 20, Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let p = h.load(&guest("file-sink")).unwrap();
    let tc = TaskConfig {
        dirs: vec![weir_host::DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/out".into(),
            read_only: false,
        }],
        ..TaskConfig::default()
    };
    let at = |offset| LogPosition {
        topic: "t".into(),
        partition: 0,
        offset,
    };
    let mut sink = p
        .sink(&h, &cfg(&[("path", "/out/f.txt")]), &[at(4)], &tc)
        .unwrap();
    let mut r = rec(0, "v");
    r.position = Some(at(5));
    sink.put_records(&[r]).unwrap();
    assert_eq!(sink.flush(&[at(5)]).unwrap(), vec![at(5)]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "t/0/5 k0 v\n"
    );
}

/// A component built against weir:connector@0.2.0 (before the `sql` capability) still loads,
/// describes itself and runs on this 0.2.2 host.
#[test]
fn a_component_built_against_0_2_0_still_runs() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("contract_020")).unwrap();
    assert!(
        p.exports(&h)
            .iter()
            .any(|e| e == "weir:connector/transformer@0.2.0")
    );
    assert_eq!(p.kind(&h), Some(weir_host::types::PluginKind::Transform));
    assert_eq!(p.describe(&h).unwrap().name, "contract-020");
    let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let input = encode(&(0..3).map(|i| rec(i, "v")).collect::<Vec<_>>());
    assert_eq!(t.apply(&input).unwrap(), weir_host::Output::Passthrough);
}

/// Without a grant, the `sql` capability refuses by name and says how to grant one; the task
/// goes on.
#[test]
fn sql_is_denied_without_a_grant() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("sql_shell")).unwrap();
    let mut t = p.transform(&h, &[], &TaskConfig::default()).unwrap();
    let out = t
        .apply_records(&[rec(0, "SELECT 1"), rec(1, "open")])
        .unwrap();
    assert_eq!(out.len(), 2);
    for r in out {
        let v = String::from_utf8(r.value.unwrap()).unwrap();
        assert!(
            v.starts_with("error denied: no SQL connection is granted to this connector (grant one as weir.sql.db.url)"),
            "{v}"
        );
    }
}
