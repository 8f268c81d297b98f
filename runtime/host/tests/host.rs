//! The host with real guest components (built by build.rs from tests/guests).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_host::types::{Error, Header, PluginKind, Record};
use weir_host::{Host, HostConfig, HostError};

fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WEIR_GUESTS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
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
    let mut t = p.transform(&h, &[]).unwrap();
    let d = t.describe().unwrap();
    assert_eq!(
        (d.name.as_str(), d.kind),
        ("identity", PluginKind::Transform)
    );
    let batch: Vec<Record> = (0..1000).map(|i| rec(i, &format!("value-{i}"))).collect();
    assert_eq!(t.apply(&batch).unwrap(), batch);
    assert_eq!(t.apply(&[]).unwrap(), vec![]);
}

#[test]
fn json_rewrite_config_and_bad_records() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("json-rewrite")).unwrap();
    let missing = p.transform(&h, &cfg(&[("from", "a")])).unwrap_err();
    assert!(
        matches!(&missing, HostError::Plugin { function, error: Error::InvalidConfig(c), .. } if function == "open" && c.key == "to"),
        "{missing:?}"
    );
    let mut t = p
        .transform(&h, &cfg(&[("from", "name"), ("to", "full_name")]))
        .unwrap();
    let out = t
        .apply(&[rec(0, r#"{"name":"ada","age":36}"#), rec(1, r#"{"age":1}"#)])
        .unwrap();
    assert_eq!(
        out[0].value.as_deref(),
        Some(&br#"{"full_name":"ada","age":36}"#[..])
    );
    assert_eq!(out[1].value.as_deref(), Some(&br#"{"age":1}"#[..]));
    assert_eq!(out[0].headers, rec(0, "").headers);
    let bad = t.apply(&[rec(0, "{}"), rec(1, "[1,2]")]).unwrap_err();
    assert!(
        matches!(&bad, HostError::Plugin { error: Error::BadRecord(b), .. } if b.index == 1),
        "{bad:?}"
    );
    // An expected error does not poison the task.
    assert!(t.apply(&[rec(0, "{}")]).is_ok());
}

#[test]
fn state_and_logs_are_per_task() {
    let h = host(64 << 20, Duration::from_secs(5));
    let p = h.load(&guest("stateful")).unwrap();
    let (mut a, mut b) = (p.transform(&h, &[]).unwrap(), p.transform(&h, &[]).unwrap());
    let seq =
        |r: &Record| String::from_utf8(r.headers.last().unwrap().value.clone().unwrap()).unwrap();
    assert_eq!(
        a.apply(&[rec(0, "x"), rec(1, "y")])
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        ["0", "1"]
    );
    assert_eq!(
        a.apply(&[rec(2, "z")])
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        ["2"]
    );
    assert_eq!(
        b.apply(&[rec(0, "x")])
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
            let mut t = p.transform(&h, &[]).unwrap();
            let batch: Vec<Record> = (0..100).map(|i| rec(i, "ok")).collect();
            for _ in 0..200 {
                assert_eq!(t.apply(&batch).unwrap().len(), 100);
            }
        })
    };

    let mut trap = h.load(&guest("trap")).unwrap().transform(&h, &[]).unwrap();
    let e = trap.apply(&[rec(0, "x")]).unwrap_err();
    match &e {
        HostError::Trap {
            plugin,
            function,
            message,
        } => {
            assert_eq!((plugin.as_str(), function.as_str()), ("trap", "apply"));
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(trap.is_poisoned());
    assert!(matches!(trap.apply(&[]), Err(HostError::Poisoned { .. })));

    let mut spin = h.load(&guest("spin")).unwrap().transform(&h, &[]).unwrap();
    let started = Instant::now();
    let e = spin.apply(&[rec(0, "x")]).unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { message, .. } if message.contains("deadline")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "deadline not enforced: {:?}",
        started.elapsed()
    );

    let mut hog = h.load(&guest("hog")).unwrap().transform(&h, &[]).unwrap();
    let batch: Vec<Record> = (0..64).map(|i| rec(i, "x")).collect();
    let e = hog.apply(&batch).unwrap_err();
    assert!(
        matches!(&e, HostError::Trap { plugin, .. } if plugin == "hog"),
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
        p.transform(&second, &[])
            .unwrap()
            .apply(&[rec(0, "x")])
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
    let e = p.transform(&h, &[]).unwrap_err();
    match &e {
        HostError::WrongWorld {
            plugin, interface, ..
        } => {
            assert_eq!(plugin, "not_a_transform");
            assert_eq!(interface, "weir:connector/transformer@0.1.0");
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("does not export weir:connector/transformer@0.1.0"),
        "{e}"
    );
}
