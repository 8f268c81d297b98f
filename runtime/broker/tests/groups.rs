//! The group coordinator and idempotent producers over TCP, with a disk engine so restarts
//! are real.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName, produce_request};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_broker::groups::GroupConfig;
use weir_broker::{Broker, BrokerConfig};
use weir_client::{Client, GroupMember};
use weir_log::{DiskStorage, FlushMode, LogOptions, TopicConfig};

#[global_allocator]
static ALLOC: weir_broker::alloc::GuardedAlloc = weir_broker::alloc::GuardedAlloc;

async fn start(
    dir: &Path,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    // The previous broker's last threads may still hold the directory lock for a moment.
    let mut tries = 0;
    let storage = loop {
        match DiskStorage::open(LogOptions {
            dir: dir.to_path_buf(),
            defaults: TopicConfig::default(),
            flush: FlushMode::None,
        }) {
            Ok(s) => break s,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        group: GroupConfig {
            initial_rebalance_delay: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    };
    let broker = Broker::bind(cfg, Arc::new(storage)).await.unwrap();
    let addr = broker.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::watch::channel(false);
    (addr, tx, tokio::spawn(broker.serve(rx)))
}

async fn connect(addr: &str) -> Client {
    Client::connect(addr, Duration::from_secs(2)).await.unwrap()
}

fn owned(members: &[&GroupMember]) -> Vec<i32> {
    let mut all: Vec<i32> = members
        .iter()
        .flat_map(|m| m.assignment.iter().flat_map(|(_, ps)| ps.clone()))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn members_share_partitions_rebalance_and_offsets_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, h) = start(dir.path()).await;
    let admin = connect(&addr).await;
    admin.create_topic("t", 4, &BTreeMap::new()).await.unwrap();

    let (c1, c2) = (
        Arc::new(connect(&addr).await),
        Arc::new(connect(&addr).await),
    );
    let mut m1 = GroupMember::new("g", vec!["t".into()]);
    let mut m2 = GroupMember::new("g", vec!["t".into()]);
    m1.session_timeout = Duration::from_millis(1500);
    m2.session_timeout = Duration::from_millis(1500);
    // Both join concurrently and land in one generation.
    let (a, b) = tokio::join!(m1.join(&c1), m2.join(&c2));
    a.unwrap();
    b.unwrap();
    assert_eq!(m1.generation, m2.generation);
    assert_eq!(owned(&[&m1, &m2]), vec![0, 1, 2, 3]);
    assert_eq!(m1.assignment.iter().map(|(_, p)| p.len()).sum::<usize>(), 2);

    // A stale generation's commit is refused; the current one is accepted.
    let offsets = BTreeMap::from([(("t".to_string(), 0), 5i64), (("t".to_string(), 1), 7i64)]);
    let stale = admin
        .commit("g", m1.generation - 1, &m1.member_id, &offsets)
        .await
        .unwrap_err()
        .to_string();
    assert!(stale.contains("error 22"), "{stale}");
    admin
        .commit("g", m1.generation, &m1.member_id, &offsets)
        .await
        .unwrap();
    assert_eq!(admin.committed("g").await.unwrap(), offsets);

    // m2 stops heartbeating: after its session timeout m1 is told to rejoin and gets everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if m1.heartbeat(&c1).await.unwrap() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance after m2's session timeout"
        );
    }
    m1.join(&c1).await.unwrap();
    assert_eq!(owned(&[&m1]), vec![0, 1, 2, 3]);
    let info = admin.describe_group("g").await.unwrap();
    assert_eq!(info.state, "Stable");
    assert_eq!(info.members.len(), 1);
    m1.leave(&c1).await.unwrap();
    assert_eq!(admin.describe_group("g").await.unwrap().state, "Empty");

    // Restart: committed offsets come back from __consumer_offsets.
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let (addr, stop, h) = start(dir.path()).await;
    let admin = connect(&addr).await;
    assert_eq!(admin.committed("g").await.unwrap(), offsets);
    let groups = admin.list_groups().await.unwrap();
    assert!(groups.iter().any(|(id, _, _)| id == "g"), "{groups:?}");
    admin.delete_group("g").await.unwrap();
    assert!(admin.committed("g").await.unwrap().is_empty());
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    n: i32,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: first_seq + i,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{}", first_seq + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn produce_raw(c: &Client, topic: &str, batch: Bytes) -> (i16, i64) {
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(batch);
    let mut td = produce_request::TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.into()));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5000;
    req.topic_data = vec![td];
    let resp = c.send(req).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn idempotent_retries_append_once_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, h) = start(dir.path()).await;
    let c = connect(&addr).await;
    c.create_topic("idem", 1, &BTreeMap::new()).await.unwrap();
    let pid = c.send(InitProducerIdRequest::default()).await.unwrap();
    assert_eq!(pid.error_code, 0);
    let (id, epoch) = (pid.producer_id.0, pid.producer_epoch);
    assert!(id >= 0);
    assert_eq!(
        produce_raw(
            &c,
            "idem",
            idempotent_batch(id, epoch, 0, 3, Compression::Lz4)
        )
        .await,
        (0, 0)
    );
    // The same batch again (a retry after a lost response): success, same offset, no append.
    assert_eq!(
        produce_raw(
            &c,
            "idem",
            idempotent_batch(id, epoch, 0, 3, Compression::Lz4)
        )
        .await,
        (0, 0)
    );
    assert_eq!(c.list_offset("idem", 0, -1).await.unwrap(), Some(3));
    // A gap in sequences is refused with OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    assert_eq!(
        produce_raw(
            &c,
            "idem",
            idempotent_batch(id, epoch, 5, 1, Compression::None)
        )
        .await
        .0,
        45
    );
    assert_eq!(
        produce_raw(
            &c,
            "idem",
            idempotent_batch(id, epoch, 3, 2, Compression::None)
        )
        .await,
        (0, 3)
    );
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();

    // After a restart the producer state is rebuilt from the log: the retry is still caught.
    let (addr, stop, h) = start(dir.path()).await;
    let c = connect(&addr).await;
    assert_eq!(
        produce_raw(
            &c,
            "idem",
            idempotent_batch(id, epoch, 3, 2, Compression::None)
        )
        .await,
        (0, 3)
    );
    assert_eq!(c.list_offset("idem", 0, -1).await.unwrap(), Some(5));
    // A new producer id does not collide with the old one.
    let next = c.send(InitProducerIdRequest::default()).await.unwrap();
    assert!(next.producer_id.0 > id, "{} <= {id}", next.producer_id.0);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

async fn join_static(
    c: &Client,
    member_id: &str,
    instance: &str,
) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::{
        GroupId, JoinGroupRequest, join_group_request::JoinGroupRequestProtocol,
    };
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 10_000;
    req.member_id = StrBytes::from_string(member_id.into());
    req.group_instance_id = Some(StrBytes::from_string(instance.into()));
    req.protocol_type = StrBytes::from_static_str("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = weir_client::encode_subscription(&["t".to_string()]);
    req.protocols = vec![p];
    c.send(req).await.unwrap()
}

async fn sync(
    c: &Client,
    generation: i32,
    member_id: &str,
    assignment: Option<Bytes>,
) -> kafka_protocol::messages::SyncGroupResponse {
    use kafka_protocol::messages::{
        GroupId, SyncGroupRequest, sync_group_request::SyncGroupRequestAssignment,
    };
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    req.generation_id = generation;
    req.member_id = StrBytes::from_string(member_id.into());
    if let Some(a) = assignment {
        let mut x = SyncGroupRequestAssignment::default();
        x.member_id = req.member_id.clone();
        x.assignment = a;
        req.assignments = vec![x];
    }
    c.send(req).await.unwrap()
}

#[tokio::test]
async fn a_static_leader_that_rejoins_keeps_its_assignment_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, h) = start(dir.path()).await;
    let c = connect(&addr).await;
    c.create_topic("t", 2, &BTreeMap::new()).await.unwrap();
    let first = join_static(&c, "", "s1").await;
    assert_eq!(first.error_code, 0);
    assert_eq!(first.leader, first.member_id);
    let assignment = Bytes::from_static(b"\x00\x00opaque-assignment");
    assert_eq!(
        sync(
            &c,
            first.generation_id,
            &first.member_id,
            Some(assignment.clone())
        )
        .await
        .assignment,
        assignment
    );

    // The process restarts: same instance id, no member id. Same generation, new id, still the
    // leader, told not to reassign; SyncGroup hands back the assignment in force.
    let again = join_static(&c, "", "s1").await;
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, first.generation_id);
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(again.leader, again.member_id);
    assert!(again.skip_assignment);
    let s = sync(
        &c,
        again.generation_id,
        &again.member_id,
        Some(Bytes::from_static(b"ignored")),
    )
    .await;
    assert_eq!((s.error_code, s.assignment), (0, assignment));
    // The old identity is gone.
    let old = sync(&c, first.generation_id, &first.member_id, None).await;
    assert_eq!(old.error_code, 25);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}

async fn heartbeat_static(c: &Client, generation: i32, member_id: &str, instance: &str) -> i16 {
    use kafka_protocol::messages::{GroupId, HeartbeatRequest};
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    req.generation_id = generation;
    req.member_id = StrBytes::from_string(member_id.into());
    req.group_instance_id = Some(StrBytes::from_string(instance.into()));
    c.send(req).await.unwrap().error_code
}

#[tokio::test]
async fn a_static_member_replaced_by_a_newer_instance_is_fenced_everywhere() {
    use kafka_protocol::messages::{
        GroupId, LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest,
        leave_group_request::MemberIdentity,
    };
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, h) = start(dir.path()).await;
    let c = connect(&addr).await;
    c.create_topic("t", 2, &BTreeMap::new()).await.unwrap();
    let first = join_static(&c, "", "s1").await;
    assert_eq!(first.error_code, 0);
    let a = sync(
        &c,
        first.generation_id,
        &first.member_id,
        Some(Bytes::new()),
    )
    .await;
    assert_eq!(a.error_code, 0);
    // A second process starts with the same group.instance.id: it takes the identity over.
    let second = join_static(&c, "", "s1").await;
    assert_eq!(second.error_code, 0);
    assert_ne!(second.member_id, first.member_id);
    let gen_ = second.generation_id;
    const FENCED: i16 = 82;
    // Every request of the old member that names the instance is fenced (KIP-345), so it
    // stops instead of rejoining and displacing the new one.
    assert_eq!(
        heartbeat_static(&c, gen_, &first.member_id, "s1").await,
        FENCED
    );
    assert_eq!(
        join_static(&c, &first.member_id, "s1").await.error_code,
        FENCED
    );
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    req.generation_id = gen_;
    req.member_id = first.member_id.clone();
    req.group_instance_id = Some(StrBytes::from_static_str("s1"));
    assert_eq!(c.send(req).await.unwrap().error_code, FENCED);
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    req.generation_id_or_member_epoch = gen_;
    req.member_id = first.member_id.clone();
    req.group_instance_id = Some(StrBytes::from_static_str("s1"));
    let mut t =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("t"));
    let mut p =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 1;
    t.partitions = vec![p];
    req.topics = vec![t];
    let r = c.send(req).await.unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, FENCED);
    let mut req = LeaveGroupRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("sg"));
    let mut m = MemberIdentity::default();
    m.member_id = first.member_id.clone();
    m.group_instance_id = Some(StrBytes::from_static_str("s1"));
    req.members = vec![m];
    let r = c.send(req).await.unwrap();
    assert_eq!(r.members[0].error_code, FENCED);
    // The new member is untouched by all of that.
    assert_eq!(heartbeat_static(&c, gen_, &second.member_id, "s1").await, 0);
    let d = c.describe_group("sg").await.unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, second.member_id.as_str());
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
}
