//! The in-process cluster over a real broker: produce and long-poll fetch, topics, commits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_broker::{Broker, BrokerConfig};
use weir_cluster::{Cluster, ClusterError, Embedded};
use weir_log::{MemoryStorage, TopicConfig, batch};

async fn cluster() -> (Embedded, tokio::sync::watch::Sender<bool>) {
    let cfg = BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Default::default()
    };
    let broker = Broker::bind(cfg, Arc::new(MemoryStorage::new(TopicConfig::default())))
        .await
        .unwrap();
    let c = Embedded::new(broker.handle());
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(broker.serve(rx));
    (c, tx)
}

#[tokio::test]
async fn produce_fetch_and_long_poll() {
    let (c, _stop) = cluster().await;
    c.create_topic("t", 2, BTreeMap::new()).await.unwrap();
    assert!(matches!(
        c.create_topic("t", 2, BTreeMap::new()).await,
        Err(ClusterError::TopicExists(_))
    ));
    let recs = [
        batch::new_record(None, Some(b"a"), 1),
        batch::new_record(None, Some(b"b"), 2),
    ];
    let p = c.produce("t", 1, batch::build(&recs)).await.unwrap();
    assert_eq!((p.base_offset, p.last_offset), (0, 1));
    let f = c.fetch("t", 1, 0, 1 << 20, Duration::ZERO).await.unwrap();
    assert_eq!(f.high_watermark, 2);
    let got = batch::decode_records(&f.records).unwrap();
    assert_eq!(got[1].value.as_deref(), Some(&b"b"[..]));

    // A fetch at the end waits for the next produce, and no longer.
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        let t0 = Instant::now();
        let f = c2
            .fetch("t", 1, 2, 1 << 20, Duration::from_secs(10))
            .await
            .unwrap();
        (f.records.len(), t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.produce("t", 1, batch::build(&recs)).await.unwrap();
    let (n, waited) = waiter.await.unwrap();
    assert!(
        n > 0 && waited < Duration::from_secs(5),
        "{n} bytes after {waited:?}"
    );
    let t0 = Instant::now();
    let f = c
        .fetch("t", 0, 0, 1 << 20, Duration::from_millis(150))
        .await
        .unwrap();
    assert!(f.records.is_empty() && t0.elapsed() >= Duration::from_millis(140));

    assert!(matches!(
        c.fetch("nope", 0, 0, 100, Duration::ZERO).await,
        Err(ClusterError::UnknownTopicOrPartition(_))
    ));
    assert!(matches!(
        c.fetch("t", 1, 99, 100, Duration::ZERO).await,
        Err(ClusterError::OffsetOutOfRange { log_end: 4, .. })
    ));
    assert_eq!(c.ensure_topic("auto").await.unwrap().partitions, 1);
    let names: Vec<_> = c
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"auto".to_string()) && names.contains(&"t".to_string()));
    assert_eq!(c.offsets("t", 1).await.unwrap().log_end, 4);
}

#[tokio::test]
async fn commits_are_kept_per_group() {
    let (c, _stop) = cluster().await;
    c.ensure_topic("t").await.unwrap();
    let mut o = BTreeMap::new();
    o.insert(("t".to_string(), 0), 42);
    c.commit("connect-x", o.clone()).await.unwrap();
    assert_eq!(c.committed("connect-x").await.unwrap(), o);
    assert!(c.committed("other").await.unwrap().is_empty());
    assert!(c.delete_group("connect-x").await.unwrap());
    assert!(c.committed("connect-x").await.unwrap().is_empty());
    assert!(!c.delete_group("connect-x").await.unwrap());
}
