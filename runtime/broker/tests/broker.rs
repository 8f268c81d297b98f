//! The broker over a real TCP socket, driven by `weir-client` and by raw bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{Broker, BrokerConfig, decode_request};
use weir_client::{Client, NewRecord};
use weir_log::{MemoryStorage, TopicConfig};

#[global_allocator]
static ALLOC: weir_broker::alloc::GuardedAlloc = weir_broker::alloc::GuardedAlloc;

async fn start() -> (
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let broker = Broker::bind(cfg, Arc::new(MemoryStorage::new(TopicConfig::default())))
        .await
        .unwrap();
    let addr = broker.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let h = tokio::spawn(broker.serve(rx));
    (addr, tx, h)
}

fn rec(v: &str) -> NewRecord {
    NewRecord {
        key: Some(Bytes::from(format!("k-{v}"))),
        value: Some(Bytes::from(v.to_string())),
        ..Default::default()
    }
}

#[tokio::test]
async fn produce_fetch_offsets_and_admin() {
    let (addr, stop, h) = start().await;
    let c = Client::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap();
    c.create_topic(
        "t",
        2,
        &BTreeMap::from([("retention.ms".to_string(), "5000".to_string())]),
    )
    .await
    .unwrap();
    let dup = c
        .create_topic("t", 2, &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(dup.contains("already exists"), "{dup}");
    let bad = c
        .create_topic(
            "u",
            1,
            &BTreeMap::from([("nope".to_string(), "1".to_string())]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(bad.contains("nope"), "{bad}");
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let recs: Vec<_> = (0..10).map(|i| rec(&format!("{codec:?}-{i}"))).collect();
        c.produce("t", 1, &recs, codec).await.unwrap();
    }
    let (records, hw) = c.fetch("t", 1, 0, Duration::from_millis(10)).await.unwrap();
    assert_eq!(hw, 50);
    let mut all = records;
    while (all.len() as i64) < hw {
        let next = all.last().unwrap().offset + 1;
        all.extend(
            c.fetch("t", 1, next, Duration::from_millis(10))
                .await
                .unwrap()
                .0,
        );
    }
    assert_eq!(all.len(), 50);
    assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as i64));
    assert_eq!(all[23].value.as_deref(), Some(&b"Snappy-3"[..]));
    assert_eq!(c.list_offset("t", 1, -2).await.unwrap(), Some(0));
    assert_eq!(c.list_offset("t", 1, -1).await.unwrap(), Some(50));
    assert_eq!(
        c.list_offset("t", 1, all[31].timestamp)
            .await
            .unwrap()
            .map(|o| o <= 31),
        Some(true)
    );
    assert_eq!(c.list_offset("t", 1, i64::MAX / 2).await.unwrap(), None);
    let oor = c
        .fetch("t", 1, 99, Duration::from_millis(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(oor.contains("error 1)"), "{oor}");
    let missing = c
        .produce("nope", 0, &[rec("x")], Compression::None)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
    let cfgs = c.describe_topic_configs("t").await.unwrap();
    assert!(cfgs.contains(&("retention.ms".to_string(), "5000".to_string(), true)));
    // Auto-create through Metadata is off for this client (allow_auto_topic_creation=false).
    assert!(c.metadata(Some(&["auto".to_string()])).await.is_err());
    c.delete_topic("t").await.unwrap();
    let left: Vec<String> = c
        .metadata(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(left, vec!["__consumer_offsets".to_string()]);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

#[tokio::test]
async fn long_poll_fetch_wakes_on_produce() {
    let (addr, stop, h) = start().await;
    let c = Arc::new(
        Client::connect(&addr, Duration::from_secs(2))
            .await
            .unwrap(),
    );
    c.create_topic("lp", 1, &BTreeMap::new()).await.unwrap();
    let c2 = Client::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let waiter =
        tokio::spawn(async move { c2.fetch("lp", 0, 0, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.produce("lp", 0, &[rec("wake")], Compression::None)
        .await
        .unwrap();
    let (records, _) = waiter.await.unwrap();
    assert_eq!(records.len(), 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

/// Sends raw bytes on a fresh connection and returns what came back before the broker closed
/// the connection (or the first response if it did not).
async fn raw(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut out)).await;
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let (addr, stop, h) = start().await;
    let healthy = Client::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap();
    healthy
        .create_topic("ok", 1, &BTreeMap::new())
        .await
        .unwrap();
    // Oversized, negative, unknown API key, truncated body, garbage body.
    assert!(
        raw(&addr, &(200 * 1024 * 1024i32).to_be_bytes())
            .await
            .is_empty()
    );
    assert!(raw(&addr, &(-5i32).to_be_bytes()).await.is_empty());
    assert!(
        raw(&addr, &frame(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]))
            .await
            .is_empty()
    );
    assert!(
        raw(&addr, &frame(&[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff]))
            .await
            .is_empty()
    );
    assert!(
        raw(&addr, &frame(&[0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 1, 2, 3]))
            .await
            .is_empty()
    );
    // ApiVersions with a version from the future: a v0 answer carrying UNSUPPORTED_VERSION (35).
    let resp = raw(&addr, &frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0, 0])).await;
    assert!(resp.len() > 10, "{resp:?}");
    assert_eq!(&resp[4..8], &42i32.to_be_bytes());
    assert_eq!(&resp[8..10], &35i16.to_be_bytes());
    // The healthy client never noticed.
    healthy
        .produce("ok", 0, &[rec("still here")], Compression::None)
        .await
        .unwrap();
    assert_eq!(
        healthy
            .fetch("ok", 0, 0, Duration::from_millis(10))
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

/// Valid request frames for mutation: ApiVersions v3, Metadata v12, Produce v9, Fetch v12.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        vec![
            0, 18, 0, 3, 0, 0, 0, 1, 0, 3, b'c', b'l', 0, 2, b'x', 0, 2, b'1', 0,
        ],
        vec![
            0, 3, 0, 12, 0, 0, 0, 2, 0, 3, b'c', b'l', 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 2, b't', 0, 1, 0, 0,
        ],
        vec![
            0, 0, 0, 9, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 0x75, 0x30, 2, 2, b't', 2, 0, 0, 0, 0, 1,
            0, 0, 0,
        ],
        vec![
            0, 1, 0, 12, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 100, 0, 0, 0, 1, 0,
            0x10, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2, 2, b't', 2, 0, 0, 0, 0, 0xff, 0xff,
            0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0, 0x10, 0, 0, 0, 0, 1, 1, 0, 0,
        ],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The frame decoder never panics on arbitrary input.
    #[test]
    fn decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(bytes));
    }

    /// Nor on valid frames with bytes flipped, cut or appended.
    #[test]
    fn decoder_survives_mutated_frames(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut f = seeds()[which].clone();
        for (i, b) in flips {
            let at = i.index(f.len());
            f[at] = b;
        }
        let keep = cut.index(f.len() + 1);
        f.truncate(keep.max(8).min(f.len()));
        f.extend_from_slice(&tail);
        let _ = decode_request(Bytes::from(f));
    }
}
