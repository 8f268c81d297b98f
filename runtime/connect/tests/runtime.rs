//! The runtime over a real broker and storage, with the first-party file connectors: a
//! pipeline, a restart that resumes it, target states, statuses and config errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_broker::{Broker, BrokerConfig};
use weir_connect::{ConfigMap, ConnectError, Registry, Runtime, State, TargetState, WorkerConfig};
use weir_host::{Host, HostConfig};

struct Worker {
    runtime: Runtime,
    cluster: Arc<dyn weir_cluster::Cluster>,
    storage: Arc<weir_log::DiskStorage>,
    stop: tokio::sync::watch::Sender<bool>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How often sinks' topics are checked again here.
const REFRESH: Duration = Duration::from_millis(200);

async fn start(data: &Path) -> Worker {
    start_in(data, None).await
}

async fn start_in(data: &Path, work_dir: Option<&Path>) -> Worker {
    // The last worker's storage closes when its fsync thread notices the broker is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let storage = loop {
        match weir_log::DiskStorage::open(weir_log::LogOptions {
            dir: data.to_path_buf(),
            defaults: Default::default(),
            flush: weir_log::FlushMode::None,
        }) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && e.to_string().contains("in use") => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("cannot open {}: {e}", data.display()),
        }
    };
    let cfg = BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    let storage = Arc::new(storage);
    let broker = Broker::bind(cfg, storage.clone()).await.unwrap();
    let cluster: Arc<dyn weir_cluster::Cluster> =
        Arc::new(weir_cluster::Embedded::new(broker.handle()));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(broker.serve(rx));
    let host = Host::new(HostConfig::default()).unwrap();
    let registry = Registry::new(Arc::new(host), None);
    let worker = WorkerConfig {
        offset_flush_interval: Duration::from_millis(100),
        work_dir: work_dir.map(Path::to_path_buf),
        topic_refresh_interval: REFRESH,
        ..Default::default()
    };
    let runtime = Runtime::start(cluster.clone(), Arc::new(registry), worker)
        .await
        .unwrap();
    Worker {
        runtime,
        cluster,
        storage,
        stop,
        served,
    }
}

impl Worker {
    /// Appends `line {i}` for each `i` to a topic partition (the topic created if need be).
    async fn produce(&self, topic: &str, partition: i32, lines: std::ops::Range<usize>) {
        self.cluster.ensure_topic(topic).await.unwrap();
        let values: Vec<String> = lines.map(|i| format!("line {i}")).collect();
        let records: Vec<_> = values
            .iter()
            .map(|v| weir_log::batch::new_record(None, Some(v.as_bytes()), 0))
            .collect();
        self.cluster
            .produce(topic, partition, weir_log::batch::build(&records))
            .await
            .unwrap();
    }

    async fn shutdown(self) {
        self.runtime.shutdown().await;
        self.stop.send(true).unwrap();
        self.served.await.unwrap().unwrap();
    }
}

fn map(kv: &[(&str, &str)]) -> ConfigMap {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn append(path: &Path, from: usize, to: usize) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in from..to {
        writeln!(f, "line {i}").unwrap();
    }
}

async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(rt: &Runtime, name: &str, want: State) -> weir_connect::ConnectorStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = rt.status(name).await.unwrap();
        if st.connector.state == want || Instant::now() > deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_pipeline_survives_a_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    append(&input, 0, 100);
    let w = start(&data).await;
    let src = map(&[
        ("connector.class", "FileStreamSource"),
        ("file", input.to_str().unwrap()),
        ("topic", "lines"),
    ]);
    let snk = map(&[
        (
            "connector.class",
            "org.apache.kafka.connect.file.FileStreamSinkConnector",
        ),
        ("file", output.to_str().unwrap()),
        ("topics", "lines"),
    ]);
    let info = w.runtime.create("src", src.clone()).await.unwrap();
    assert_eq!(info.kind, weir_connect::Kind::Source);
    assert_eq!(info.tasks.len(), 1);
    assert_eq!(info.config.get("name").map(String::as_str), Some("src"));
    w.runtime.create("snk", snk).await.unwrap();
    assert!(matches!(
        w.runtime.create("src", src).await,
        Err(ConnectError::Exists(_))
    ));
    assert_eq!(wait_lines(&output, 100).await, expected(100));
    let st = w.runtime.status("snk").await.unwrap();
    assert_eq!(st.connector.state, State::Running);
    assert_eq!(st.tasks[0].state, State::Running);
    w.shutdown().await;

    // Lines written while Weir is down arrive after the restart, each once.
    append(&input, 100, 150);
    let w = start(&data).await;
    assert_eq!(w.runtime.connectors().await, ["snk", "src"]);
    assert_eq!(wait_lines(&output, 150).await, expected(150));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_lines(&output, 150).await, expected(150));

    // Paused: nothing moves; resumed: everything does.
    w.runtime
        .set_target("src", TargetState::Paused)
        .await
        .unwrap();
    assert_eq!(
        wait_state(&w.runtime, "src", State::Paused).await.tasks[0].state,
        State::Paused
    );
    append(&input, 150, 160);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wait_lines(&output, 150).await.len(), 150);
    w.runtime
        .set_target("src", TargetState::Started)
        .await
        .unwrap();
    assert_eq!(wait_lines(&output, 160).await, expected(160));

    // Stopped: no tasks; started again from where it was.
    w.runtime
        .set_target("src", TargetState::Stopped)
        .await
        .unwrap();
    let st = w.runtime.status("src").await.unwrap();
    assert_eq!((st.connector.state, st.tasks.len()), (State::Stopped, 0));
    append(&input, 160, 170);
    w.runtime
        .set_target("src", TargetState::Started)
        .await
        .unwrap();
    assert_eq!(wait_lines(&output, 170).await, expected(170));

    w.runtime.delete("src").await.unwrap();
    assert!(matches!(
        w.runtime.status("src").await,
        Err(ConnectError::NotFound(_))
    ));
    assert_eq!(w.runtime.connectors().await, ["snk"]);
    w.shutdown().await;
    let w = start(&data).await;
    assert_eq!(w.runtime.connectors().await, ["snk"]);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_checked_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(&dir.path().join("data")).await;
    let file = dir.path().join("x.txt");
    let file = file.to_str().unwrap();
    let err = |r: Result<weir_connect::ConnectorInfo, ConnectError>| match r {
        Err(ConnectError::BadConfig(m)) => m,
        other => panic!("expected a config error, got {other:?}"),
    };
    let m = err(w
        .runtime
        .create("a", map(&[("connector.class", "NoSuchConnector")]))
        .await);
    assert!(
        m.contains("connector.class") && m.contains("NoSuchConnector"),
        "{m}"
    );
    let m = err(w.runtime.create("a", map(&[("file", file)])).await);
    assert!(m.contains("connector.class"), "{m}");
    let m = err(w
        .runtime
        .create(
            "a",
            map(&[("connector.class", "FileStreamSink"), ("file", file)]),
        )
        .await);
    assert!(m.contains("topics"), "{m}");
    let m = err(w
        .runtime
        .create(
            "a",
            map(&[
                ("connector.class", "FileStreamSource"),
                ("file", file),
                ("topic", "t"),
                ("topics", "t"),
            ]),
        )
        .await);
    assert!(m.contains("topics"), "{m}");
    let m = err(w
        .runtime
        .create(
            "a",
            map(&[
                ("connector.class", "FileStreamSource"),
                ("file", file),
                ("topic", "t"),
                ("bogus.key", "1"),
            ]),
        )
        .await);
    assert!(m.contains("bogus.key"), "{m}");
    assert!(w.runtime.connectors().await.is_empty());
    assert!(matches!(
        w.runtime.info("a").await,
        Err(ConnectError::NotFound(_))
    ));
    assert!(matches!(
        w.runtime.delete("a").await,
        Err(ConnectError::NotFound(_))
    ));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_whose_tasks_all_failed_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(&dir.path().join("data")).await;
    // The sink's output is a directory: its task cannot open it.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let cfg: BTreeMap<_, _> = map(&[
        ("connector.class", "FileStreamSink"),
        ("file", out.to_str().unwrap()),
        ("topics", "t"),
    ]);
    w.runtime.create("bad", cfg).await.unwrap();
    let st = wait_state(&w.runtime, "bad", State::Failed).await;
    assert_eq!(st.connector.state, State::Failed, "{st:?}");
    assert_eq!(st.tasks[0].state, State::Failed);
    assert!(st.tasks[0].trace.as_deref().is_some_and(|t| !t.is_empty()));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_quickstart_configs_with_relative_files_run_unchanged() {
    // connect-file-source.properties and connect-file-sink.properties, as Kafka ships them.
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("test.txt"), 0, 5);
    let w = start_in(&dir.path().join("data"), Some(dir.path())).await;
    let src = map(&[
        ("name", "local-file-source"),
        ("connector.class", "FileStreamSource"),
        ("tasks.max", "1"),
        ("file", "test.txt"),
        ("topic", "connect-test"),
    ]);
    let snk = map(&[
        ("name", "local-file-sink"),
        ("connector.class", "FileStreamSink"),
        ("tasks.max", "1"),
        ("file", "test.sink.txt"),
        ("topics", "connect-test"),
    ]);
    w.runtime.create("local-file-source", src).await.unwrap();
    w.runtime.create("local-file-sink", snk).await.unwrap();
    assert_eq!(
        wait_lines(&dir.path().join("test.sink.txt"), 5).await,
        expected(5)
    );
    // The config is kept as given.
    let cfg = w.runtime.config("local-file-source").await.unwrap();
    assert_eq!(cfg["file"], "test.txt");
    w.shutdown().await;
    // Without a working directory a relative file is refused, naming the key.
    let w = start(&dir.path().join("data2")).await;
    let err = w
        .runtime
        .create(
            "rel",
            map(&[
                ("connector.class", "FileStreamSource"),
                ("file", "x.txt"),
                ("topic", "t"),
            ]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("file") && err.contains("absolute"), "{err}");
    w.shutdown().await;
}

/// The output's lines sorted by number (records of different partitions arrive in any order),
/// once `n` are there (or the wait is over).
async fn wait_sorted(path: &Path, n: usize) -> Vec<String> {
    let mut lines = wait_lines(path, n).await;
    lines.sort_by_key(|l| {
        l.strip_prefix("line ")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_sink_reads_topics_created_after_it_started_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = start(&dir.path().join("data")).await;
    let output = dir.path().join("out.txt");
    let other = dir.path().join("other.txt");
    w.produce("events-a", 0, 0..10).await;
    w.produce("unrelated", 0, 0..5).await;
    w.runtime
        .create(
            "snk",
            map(&[
                ("connector.class", "FileStreamSink"),
                ("file", output.to_str().unwrap()),
                ("topics.regex", "events-.*"),
            ]),
        )
        .await
        .unwrap();
    w.runtime
        .create(
            "other",
            map(&[
                ("connector.class", "FileStreamSink"),
                ("file", other.to_str().unwrap()),
                ("topics", "unrelated"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(wait_sorted(&output, 10).await, expected(10));
    assert_eq!(wait_lines(&other, 5).await, expected(5));

    // A topic created later is read from its start; what was read before is not read again.
    w.produce("events-b", 0, 10..20).await;
    assert_eq!(wait_sorted(&output, 20).await, expected(20));
    assert_eq!(
        w.runtime.topics("snk").await.unwrap(),
        ["events-a", "events-b"]
    );
    w.produce("events-a", 0, 20..25).await;
    w.produce("events-b", 0, 25..30).await;
    w.produce("unrelated", 0, 5..8).await;
    assert_eq!(wait_sorted(&output, 30).await, expected(30));
    assert_eq!(wait_lines(&other, 8).await, expected(8));

    // Paused, the new assignment's tasks stay paused; resumed, they read it.
    w.runtime
        .set_target("snk", TargetState::Paused)
        .await
        .unwrap();
    w.produce("events-c", 0, 30..35).await;
    tokio::time::sleep(REFRESH * 4).await;
    let st = w.runtime.status("snk").await.unwrap();
    assert_eq!(st.connector.state, State::Paused);
    assert!(st.tasks.iter().all(|t| t.state == State::Paused), "{st:?}");
    assert_eq!(
        w.runtime.topics("snk").await.unwrap(),
        ["events-a", "events-b", "events-c"]
    );
    assert_eq!(wait_lines(&output, 30).await.len(), 30);
    w.runtime
        .set_target("snk", TargetState::Started)
        .await
        .unwrap();
    assert_eq!(wait_sorted(&output, 35).await, expected(35));

    // Stopped, it is not watched (no tasks come back); started again, it reads what came.
    w.runtime
        .set_target("snk", TargetState::Stopped)
        .await
        .unwrap();
    w.produce("events-d", 0, 35..40).await;
    tokio::time::sleep(REFRESH * 4).await;
    let st = w.runtime.status("snk").await.unwrap();
    assert_eq!((st.connector.state, st.tasks.len()), (State::Stopped, 0));
    w.runtime
        .set_target("snk", TargetState::Started)
        .await
        .unwrap();
    assert_eq!(wait_sorted(&output, 40).await, expected(40));
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(wait_sorted(&output, 40).await, expected(40));
    assert_eq!(wait_lines(&other, 8).await, expected(8));
    let st = w.runtime.status("other").await.unwrap();
    assert_eq!(st.tasks[0].state, State::Running);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_reads_partitions_added_to_its_topic() {
    use weir_log::Storage;
    let dir = tempfile::tempdir().unwrap();
    let w = start(&dir.path().join("data")).await;
    let output = dir.path().join("out.txt");
    w.cluster
        .create_topic("grow", 1, BTreeMap::new())
        .await
        .unwrap();
    w.produce("grow", 0, 0..10).await;
    w.runtime
        .create(
            "snk",
            map(&[
                ("connector.class", "FileStreamSink"),
                ("file", output.to_str().unwrap()),
                ("topics", "grow"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(wait_sorted(&output, 10).await, expected(10));

    w.storage.create_partitions("grow", 3).unwrap();
    w.produce("grow", 1, 10..20).await;
    w.produce("grow", 2, 20..30).await;
    w.produce("grow", 0, 30..40).await;
    assert_eq!(wait_sorted(&output, 40).await, expected(40));
    tokio::time::sleep(REFRESH * 3).await;
    assert_eq!(wait_sorted(&output, 40).await, expected(40));
    // Every partition's offsets are committed under the sink's group.
    let deadline = Instant::now() + Duration::from_secs(10);
    let committed = loop {
        let offs = w.runtime.offsets("snk").await.unwrap();
        let mut got: Vec<(i64, i64)> = offs["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["partition"]["kafka_partition"].as_i64().unwrap(),
                    o["offset"]["kafka_offset"].as_i64().unwrap(),
                )
            })
            .collect();
        got.sort();
        if got == [(0, 20), (1, 10), (2, 10)] || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(committed, [(0, 20), (1, 10), (2, 10)]);
    w.shutdown().await;
}
