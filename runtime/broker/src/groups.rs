//! The group coordinator: consumer group membership (the classic rebalance protocol),
//! committed offsets, and producer id allocation.
//!
//! State lives in memory behind one mutex; every durable fact (a committed offset, a group's
//! generation, the next producer id block) is also written as a record to the internal
//! compacted topic `__consumer_offsets` and replayed from it on start. Members are not
//! persisted: after a restart they get UNKNOWN_MEMBER_ID and rejoin, as after a Kafka
//! coordinator failover.
//!
//! A rebalance: JoinGroup moves the group to PreparingRebalance and parks each member's join
//! until every known member has rejoined (or the rebalance timeout passes, dropping the
//! stragglers); then the generation advances, the leader receives every member's subscription,
//! and SyncGroup distributes the leader's assignment. Heartbeats tell members that a rebalance
//! is under way; a member that stops heartbeating is removed after its session timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use weir_log::{LogError, Storage};

/// Name of the internal topic holding offsets, group generations and producer id blocks.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Coordinator settings.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// Wait this long after the first member joins an empty group before completing the
    /// rebalance, so that members starting together land in one generation.
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(300),
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
        }
    }
}

/// Kafka error codes used here.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a parked JoinGroup receives when the rebalance completes.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, subscription metadata); only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader must not compute a new assignment (a static leader rejoining).
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// What a parked SyncGroup receives.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: String,
    pub protocol: String,
    pub assignment: Bytes,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// The subscription metadata for the chosen protocol.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub offsets: BTreeMap<(String, i32), Committed>,
    rebalance_deadline: Instant,
    delay_until: Instant,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used (KIP-394).
    pending: std::collections::HashSet<String>,
}

impl Group {
    fn new(id: &str) -> Group {
        let now = Instant::now();
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline: now,
            delay_until: now,
            pending: Default::default(),
        }
    }

    /// KIP-345: a request naming a static instance whose identity has passed to a newer member
    /// (one that joined with the same `group.instance.id`) comes from the old, fenced member.
    pub fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id.is_some_and(|iid| {
            self.members
                .values()
                .any(|m| m.instance_id.as_deref() == Some(iid) && m.id != member_id)
        })
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> Vec<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let mut out = Vec::new();
        for m in self.members.values() {
            let mut b = m.metadata(&self.protocol);
            if b.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([b[0], b[1]]);
            let _ = bytes::Buf::get_i16(&mut b);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut b, version.clamp(0, 3)) {
                out.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        out
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ProducerIds,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupRecord {
    generation: i32,
    protocol_type: String,
    protocol: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProducerIdRecord {
    next: i64,
}

/// Producer ids are handed out from blocks; only the end of a block is persisted.
const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug)]
struct Inner {
    groups: HashMap<String, Group>,
    next_producer_id: i64,
    producer_id_block_end: i64,
}

/// The coordinator.
#[derive(Debug)]
pub struct Coordinator {
    cfg: GroupConfig,
    storage: Arc<dyn Storage>,
    inner: Mutex<Inner>,
}

/// A durable write to wait for: the offset up to which `__consumer_offsets` must be synced.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub up_to: i64,
    pub needs_sync: bool,
}

fn poisoned<T>(_: T) -> LogError {
    LogError::Io(std::io::Error::other("coordinator lock poisoned"))
}

impl Coordinator {
    /// Creates the internal topic if needed and replays it.
    pub fn load(storage: Arc<dyn Storage>, cfg: GroupConfig) -> Result<Coordinator, LogError> {
        if storage.topic(OFFSETS_TOPIC).is_none() {
            let mut o = BTreeMap::new();
            o.insert("cleanup.policy".to_string(), "compact".to_string());
            o.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
            storage.create_topic(OFFSETS_TOPIC, 1, o)?;
        }
        let mut inner = Inner {
            groups: HashMap::new(),
            next_producer_id: 0,
            producer_id_block_end: 0,
        };
        let started = Instant::now();
        let mut records = 0usize;
        let mut next = storage.offsets(OFFSETS_TOPIC, 0)?.log_start;
        loop {
            let r = storage.read(OFFSETS_TOPIC, 0, next, 1 << 20, true)?;
            if r.records.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < r.records.len() {
                let Some(h) = weir_log::batch::BatchHeader::parse(&r.records[pos..]) else {
                    break;
                };
                let batch = &r.records[pos..pos + h.total_len()];
                for rec in weir_log::batch::decode_records(batch)? {
                    if rec.offset < next {
                        continue;
                    }
                    records += 1;
                    let Some(key) = rec
                        .key
                        .as_ref()
                        .and_then(|k| serde_json::from_slice::<Key>(k).ok())
                    else {
                        continue;
                    };
                    apply(&mut inner, key, rec.value.as_deref());
                }
                next = h.last_offset() + 1;
                pos += h.total_len();
            }
        }
        inner.next_producer_id = inner.producer_id_block_end;
        tracing::info!(
            groups = inner.groups.len(),
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
        Ok(Coordinator {
            cfg,
            storage,
            inner: Mutex::new(inner),
        })
    }

    fn write(&self, entries: Vec<(Key, Option<Vec<u8>>)>) -> Result<Written, LogError> {
        let now = weir_log::now_ms();
        let records: Vec<_> = entries
            .into_iter()
            .map(|(k, v)| {
                let key = serde_json::to_vec(&k).unwrap_or_default();
                weir_log::batch::new_record(Some(&key), v.as_deref(), now)
            })
            .collect();
        let batch = weir_log::batch::build(&records);
        let info = self.storage.append(OFFSETS_TOPIC, 0, &batch)?;
        Ok(Written {
            up_to: info.last_offset + 1,
            needs_sync: info.needs_sync,
        })
    }

    /// Allocates a producer id (InitProducerId).
    pub fn next_producer_id(&self) -> Result<(i64, Option<Written>), LogError> {
        let mut inner = self.inner.lock().map_err(poisoned)?;
        let mut written = None;
        if inner.next_producer_id >= inner.producer_id_block_end {
            let end = inner.producer_id_block_end + PRODUCER_ID_BLOCK;
            let v = serde_json::to_vec(&ProducerIdRecord { next: end }).unwrap_or_default();
            written = Some(self.write(vec![(Key::ProducerIds, Some(v))])?);
            inner.producer_id_block_end = end;
        }
        let id = inner.next_producer_id;
        inner.next_producer_id += 1;
        Ok((id, written))
    }

    fn clamp_session(&self, ms: i32) -> Option<Duration> {
        let d = Duration::from_millis(ms.max(0) as u64);
        (d >= self.cfg.min_session_timeout && d <= self.cfg.max_session_timeout).then_some(d)
    }

    /// JoinGroup. Returns a receiver that resolves when the rebalance completes.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<String>,
        client_id: &str,
        client_host: &str,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol_type: &str,
        protocols: Vec<(String, Bytes)>,
        require_known_member: bool,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let reply = |tx: oneshot::Sender<JoinResult>, r: JoinResult| {
            let _ = tx.send(r);
        };
        if group_id.is_empty() {
            reply(tx, JoinResult::error(code::INVALID_GROUP_ID, member_id));
            return rx;
        }
        let Some(session) = self.clamp_session(session_timeout_ms) else {
            reply(
                tx,
                JoinResult::error(code::INVALID_SESSION_TIMEOUT, member_id),
            );
            return rx;
        };
        let rebalance =
            Duration::from_millis(rebalance_timeout_ms.max(session_timeout_ms).max(0) as u64);
        let Ok(mut inner) = self.inner.lock() else {
            reply(
                tx,
                JoinResult::error(code::COORDINATOR_NOT_AVAILABLE, member_id),
            );
            return rx;
        };
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        if !group.protocol_type.is_empty()
            && !group.members.is_empty()
            && group.protocol_type != protocol_type
        {
            reply(
                tx,
                JoinResult::error(code::INCONSISTENT_GROUP_PROTOCOL, member_id),
            );
            return rx;
        }
        if group.members.is_empty() {
            group.protocol_type = protocol_type.to_string();
        } else if !protocols.iter().any(|(n, _)| {
            group
                .members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        }) {
            reply(
                tx,
                JoinResult::error(code::INCONSISTENT_GROUP_PROTOCOL, member_id),
            );
            return rx;
        }
        let now = Instant::now();
        let mut id = member_id.to_string();
        if id.is_empty() {
            // A static member that rejoins takes over its old identity (fencing the old id).
            let old = instance_id.as_ref().and_then(|iid| {
                group
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(iid.as_str()))
                    .map(|m| m.id.clone())
            });
            id = format!("{client_id}-{}", uuid::Uuid::new_v4());
            // A static member coming back within its session timeout, with the same
            // subscription, while the group is stable and someone else leads: it takes over its
            // old identity and assignment without a rebalance (KIP-345).
            let quiet = old.as_ref().is_some_and(|o| {
                group.state == GroupState::Stable
                    && group
                        .members
                        .get(o)
                        .is_some_and(|m| m.protocols == protocols)
            });
            if quiet && let Some(mut m) = old.as_ref().and_then(|o| group.members.remove(o)) {
                tracing::info!(group = %group.id, old = %m.id, new = %id, "static member rejoined; no rebalance");
                fence_pending(&mut m);
                m.id = id.clone();
                // The member is now the new process: report its client id and host (Kafka
                // keeps the old ones, which misleads whoever debugs the group).
                m.client_id = client_id.to_string();
                m.client_host = client_host.to_string();
                m.last_heartbeat = now;
                m.session_timeout = session;
                m.rebalance_timeout = rebalance;
                group.members.insert(id.clone(), m);
                let was_leader = old.as_deref() == group.leader.as_deref();
                if was_leader {
                    group.leader = Some(id.clone());
                }
                // A returning leader sees the members again but must not hand out a new
                // assignment (KIP-814 skip_assignment); SyncGroup in Stable returns the
                // assignment already in force.
                let members = if was_leader {
                    group
                        .members
                        .values()
                        .map(|m| {
                            (
                                m.id.clone(),
                                m.instance_id.clone(),
                                m.metadata(&group.protocol),
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                reply(
                    tx,
                    JoinResult {
                        error: code::NONE,
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        leader: group.leader.clone().unwrap_or_default(),
                        member_id: id,
                        members,
                        skip_assignment: was_leader,
                    },
                );
                return rx;
            }
            if let Some(old) = old {
                if let Some(mut m) = group.members.remove(&old) {
                    tracing::info!(group = %group.id, old = %old, new = %id, "static member replaced by a new instance; the old one is fenced");
                    fence_pending(&mut m);
                    if group.leader.as_deref() == Some(old.as_str()) {
                        group.leader = Some(id.clone());
                    }
                }
            } else if require_known_member {
                // KIP-394: hand out an id first, so a client that dies mid-join leaves no ghost.
                if group.pending.len() > 10_000 {
                    group.pending.clear();
                }
                group.pending.insert(id.clone());
                reply(tx, JoinResult::error(code::MEMBER_ID_REQUIRED, &id));
                return rx;
            }
        } else if group.is_fenced(instance_id.as_deref(), &id) {
            reply(tx, JoinResult::error(code::FENCED_INSTANCE_ID, &id));
            return rx;
        } else if !group.members.contains_key(&id) && !group.pending.remove(&id) {
            reply(tx, JoinResult::error(code::UNKNOWN_MEMBER_ID, &id));
            return rx;
        }
        let unchanged = group
            .members
            .get(&id)
            .is_some_and(|m| m.protocols == protocols);
        let is_leader = group.leader.as_deref() == Some(id.as_str());
        if group.state == GroupState::Stable && unchanged && !is_leader {
            // Nothing changed for a follower: give it the current generation again.
            let r = JoinResult {
                error: code::NONE,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                leader: group.leader.clone().unwrap_or_default(),
                member_id: id.clone(),
                members: Vec::new(),
                skip_assignment: false,
            };
            if let Some(m) = group.members.get_mut(&id) {
                m.last_heartbeat = now;
            }
            reply(tx, r);
            return rx;
        }
        let member = group.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            instance_id: instance_id.clone(),
            client_id: client_id.to_string(),
            client_host: client_host.to_string(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: protocol_type.to_string(),
            protocols: protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat: now,
            awaiting_join: None,
            awaiting_sync: None,
        });
        member.protocols = protocols;
        member.session_timeout = session;
        member.rebalance_timeout = rebalance;
        member.last_heartbeat = now;
        if let Some(old) = member.awaiting_join.replace(tx) {
            let _ = old.send(JoinResult::error(code::REBALANCE_IN_PROGRESS, &id));
        }
        if group.leader.is_none() {
            group.leader = Some(id.clone());
        }
        if group.state != GroupState::PreparingRebalance {
            prepare_rebalance(group, &self.cfg, now);
        }
        self.maybe_complete_join(group, now);
        rx
    }

    fn maybe_complete_join(&self, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance || now < group.delay_until {
            return;
        }
        let all_joined = group.members.values().all(|m| m.awaiting_join.is_some());
        if !all_joined && now < group.rebalance_deadline {
            return;
        }
        // Members that did not rejoin in time are out.
        let stragglers: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in stragglers {
            tracing::info!(group = %group.id, member = %id, "member did not rejoin in time; removed");
            group.members.remove(&id);
        }
        if group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.generation += 1;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol.clear();
            group.leader = None;
            self.persist_group(group);
            return;
        }
        // The leader's first protocol that every member supports.
        let leader = group.leader.clone().unwrap_or_default();
        let candidates: Vec<String> = group
            .members
            .get(&leader)
            .map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        group.protocol = candidates
            .into_iter()
            .find(|p| {
                group
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == p))
            })
            .unwrap_or_default();
        group.state = GroupState::CompletingRebalance;
        let all: Vec<(String, Option<String>, Bytes)> = group
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata(&group.protocol),
                )
            })
            .collect();
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
            m.last_heartbeat = now;
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult {
                    error: code::NONE,
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                });
            }
        }
        tracing::info!(group = %group.id, generation = group.generation, members = group.members.len(), protocol = %group.protocol, "rebalance completed");
        self.persist_group(group);
    }

    fn persist_group(&self, group: &Group) {
        let v = serde_json::to_vec(&GroupRecord {
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
        })
        .unwrap_or_default();
        if let Err(e) = self.write(vec![(
            Key::Group {
                group: group.id.clone(),
            },
            Some(v),
        )]) {
            tracing::error!(group = %group.id, error = %e, "cannot persist group generation");
        }
    }

    /// SyncGroup.
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        let err = |e: i16| SyncResult {
            error: e,
            protocol_type: String::new(),
            protocol: String::new(),
            assignment: Bytes::new(),
        };
        let Ok(mut inner) = self.inner.lock() else {
            let _ = tx.send(err(code::COORDINATOR_NOT_AVAILABLE));
            return rx;
        };
        let Some(group) = inner.groups.get_mut(group_id) else {
            let _ = tx.send(err(code::UNKNOWN_MEMBER_ID));
            return rx;
        };
        if group.is_fenced(instance_id, member_id) {
            let _ = tx.send(err(code::FENCED_INSTANCE_ID));
            return rx;
        }
        if !group.members.contains_key(member_id) {
            let _ = tx.send(err(code::UNKNOWN_MEMBER_ID));
            return rx;
        }
        if generation != group.generation {
            let _ = tx.send(err(code::ILLEGAL_GENERATION));
            return rx;
        }
        let ok = |g: &Group, a: Bytes| SyncResult {
            error: code::NONE,
            protocol_type: g.protocol_type.clone(),
            protocol: g.protocol.clone(),
            assignment: a,
        };
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                let _ = tx.send(err(code::REBALANCE_IN_PROGRESS));
            }
            GroupState::Stable => {
                let a = group
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let _ = tx.send(ok(group, a));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(member_id) {
                    m.last_heartbeat = Instant::now();
                    m.awaiting_sync = Some(tx);
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut map: HashMap<String, Bytes> = assignments.into_iter().collect();
                    group.state = GroupState::Stable;
                    let (pt, p) = (group.protocol_type.clone(), group.protocol.clone());
                    for m in group.members.values_mut() {
                        m.assignment = map.remove(&m.id).unwrap_or_default();
                        if let Some(w) = m.awaiting_sync.take() {
                            let _ = w.send(SyncResult {
                                error: code::NONE,
                                protocol_type: pt.clone(),
                                protocol: p.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                    tracing::debug!(group = %group.id, generation = group.generation, "assignment distributed");
                }
            }
        }
        rx
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let Ok(mut inner) = self.inner.lock() else {
            return code::COORDINATOR_NOT_AVAILABLE;
        };
        let Some(group) = inner.groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if group.is_fenced(instance_id, member_id) {
            return code::FENCED_INSTANCE_ID;
        }
        let Some(m) = group.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        m.last_heartbeat = Instant::now();
        match group.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            _ if generation != group.generation => code::ILLEGAL_GENERATION,
            _ => code::NONE,
        }
    }

    /// LeaveGroup for each (member id, instance id); returns an error code per member.
    pub fn leave(&self, group_id: &str, members: Vec<(String, Option<String>)>) -> (i16, Vec<i16>) {
        let Ok(mut inner) = self.inner.lock() else {
            return (code::COORDINATOR_NOT_AVAILABLE, Vec::new());
        };
        let Some(group) = inner.groups.get_mut(group_id) else {
            return (
                code::UNKNOWN_MEMBER_ID,
                members.iter().map(|_| code::UNKNOWN_MEMBER_ID).collect(),
            );
        };
        let now = Instant::now();
        let mut codes = Vec::new();
        for (mid, iid) in members {
            if !mid.is_empty() && group.is_fenced(iid.as_deref(), &mid) {
                codes.push(code::FENCED_INSTANCE_ID);
                continue;
            }
            let id = if mid.is_empty() {
                iid.as_ref().and_then(|i| {
                    group
                        .members
                        .values()
                        .find(|m| m.instance_id.as_ref() == Some(i))
                        .map(|m| m.id.clone())
                })
            } else {
                Some(mid)
            };
            match id.and_then(|id| group.members.remove(&id)) {
                Some(m) => {
                    tracing::info!(group = %group.id, member = %m.id, "member left");
                    codes.push(code::NONE);
                }
                None => codes.push(code::UNKNOWN_MEMBER_ID),
            }
        }
        // Only a member that really left changes the group (a fenced or unknown one does not).
        if codes.contains(&code::NONE) {
            self.after_membership_change(group, now);
        }
        let top = if codes.len() == 1 {
            codes[0]
        } else {
            code::NONE
        };
        (top, codes)
    }

    fn after_membership_change(&self, group: &mut Group, now: Instant) {
        if group.members.is_empty() {
            if group.state != GroupState::Empty {
                group.state = GroupState::Empty;
                group.generation += 1;
                group.leader = None;
                group.protocol.clear();
                self.persist_group(group);
            }
        } else if group.state != GroupState::PreparingRebalance {
            prepare_rebalance(group, &self.cfg, now);
            self.maybe_complete_join(group, now);
        } else {
            self.maybe_complete_join(group, now);
        }
    }

    /// Expires members past their session timeout and completes rebalances whose wait is over.
    pub fn tick(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        for group in inner.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    m.awaiting_join.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|m| m.id.clone())
                .collect();
            let changed = !expired.is_empty();
            for id in expired {
                tracing::info!(group = %group.id, member = %id, "session timed out; member removed");
                if let Some(mut m) = group.members.remove(&id)
                    && let Some(s) = m.awaiting_sync.take()
                {
                    let _ = s.send(SyncResult {
                        error: code::REBALANCE_IN_PROGRESS,
                        protocol_type: String::new(),
                        protocol: String::new(),
                        assignment: Bytes::new(),
                    });
                }
            }
            if changed {
                self.after_membership_change(group, now);
            } else {
                self.maybe_complete_join(group, now);
            }
        }
    }

    /// Validates a commit's member and generation. `generation == -1` with no member is a
    /// standalone commit, allowed only while the group has no members.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let Ok(inner) = self.inner.lock() else {
            return code::COORDINATOR_NOT_AVAILABLE;
        };
        let Some(group) = inner.groups.get(group_id) else {
            return if generation < 0 {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        }
        if group.is_fenced(instance_id, member_id) {
            return code::FENCED_INSTANCE_ID;
        }
        if !group.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if generation != group.generation {
            return code::ILLEGAL_GENERATION;
        }
        if group.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }

    /// Stores committed offsets durably and in memory.
    pub fn commit(
        &self,
        group_id: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<Written, LogError> {
        let entries = offsets
            .iter()
            .map(|(t, p, c)| {
                (
                    Key::Offset {
                        group: group_id.into(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    Some(serde_json::to_vec(c).unwrap_or_default()),
                )
            })
            .collect();
        let written = self.write(entries)?;
        let mut inner = self.inner.lock().map_err(poisoned)?;
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        for (t, p, c) in offsets {
            group.offsets.insert((t, p), c);
        }
        Ok(written)
    }

    /// Committed offsets of a group (all of them when `wanted` is `None`).
    pub fn fetch_offsets(&self, group_id: &str) -> BTreeMap<(String, i32), Committed> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.groups.get(group_id).map(|g| g.offsets.clone()))
            .unwrap_or_default()
    }

    /// Runs `f` on a group, if it exists.
    pub fn with_group<R>(&self, group_id: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.groups.get(group_id).map(f))
    }

    /// Every group: (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = inner
            .groups
            .values()
            .map(|g| (g.id.clone(), g.protocol_type.clone(), g.state))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// DeleteGroups: only empty groups; their offsets go too.
    pub fn delete_group(&self, group_id: &str) -> Result<i16, LogError> {
        let mut inner = self.inner.lock().map_err(poisoned)?;
        let Some(group) = inner.groups.get(group_id) else {
            return Ok(code::GROUP_ID_NOT_FOUND);
        };
        if !group.members.is_empty() {
            return Ok(code::NON_EMPTY_GROUP);
        }
        let mut entries: Vec<(Key, Option<Vec<u8>>)> = group
            .offsets
            .keys()
            .map(|(t, p)| {
                (
                    Key::Offset {
                        group: group_id.into(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    None,
                )
            })
            .collect();
        entries.push((
            Key::Group {
                group: group_id.into(),
            },
            None,
        ));
        self.write(entries)?;
        inner.groups.remove(group_id);
        tracing::info!(group = group_id, "group deleted");
        Ok(code::NONE)
    }

    /// OffsetDelete: removes committed offsets of topics the group does not subscribe to.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        parts: Vec<(String, i32)>,
    ) -> Result<(i16, Vec<i16>), LogError> {
        let mut inner = self.inner.lock().map_err(poisoned)?;
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Ok((code::GROUP_ID_NOT_FOUND, Vec::new()));
        };
        let subscribed = if group.members.is_empty() {
            Vec::new()
        } else {
            group.subscribed_topics()
        };
        let mut codes = Vec::new();
        let mut entries = Vec::new();
        for (t, p) in &parts {
            if subscribed.contains(t) {
                codes.push(code::GROUP_SUBSCRIBED_TO_TOPIC);
            } else {
                codes.push(code::NONE);
                entries.push((
                    Key::Offset {
                        group: group_id.into(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    None,
                ));
            }
        }
        if !entries.is_empty() {
            self.write(entries)?;
        }
        for ((t, p), c) in parts.iter().zip(&codes) {
            if *c == code::NONE {
                group.offsets.remove(&(t.clone(), *p));
            }
        }
        Ok((code::NONE, codes))
    }
}

/// Answers a replaced static member's pending JoinGroup and SyncGroup with FENCED_INSTANCE_ID.
fn fence_pending(m: &mut Member) {
    if let Some(j) = m.awaiting_join.take() {
        let _ = j.send(JoinResult::error(code::FENCED_INSTANCE_ID, &m.id));
    }
    if let Some(s) = m.awaiting_sync.take() {
        let _ = s.send(SyncResult {
            error: code::FENCED_INSTANCE_ID,
            protocol_type: String::new(),
            protocol: String::new(),
            assignment: Bytes::new(),
        });
    }
}

fn prepare_rebalance(group: &mut Group, cfg: &GroupConfig, now: Instant) {
    let was_empty = group.state == GroupState::Empty;
    group.state = GroupState::PreparingRebalance;
    let timeout = group
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::from_secs(60));
    group.rebalance_deadline = now + timeout;
    group.delay_until = if was_empty {
        now + cfg.initial_rebalance_delay
    } else {
        now
    };
    // Members waiting for an assignment from the previous round must rejoin.
    for m in group.members.values_mut() {
        if let Some(s) = m.awaiting_sync.take() {
            let _ = s.send(SyncResult {
                error: code::REBALANCE_IN_PROGRESS,
                protocol_type: String::new(),
                protocol: String::new(),
                assignment: Bytes::new(),
            });
        }
    }
    tracing::info!(group = %group.id, members = group.members.len(), "preparing rebalance");
}

fn apply(inner: &mut Inner, key: Key, value: Option<&[u8]>) {
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => {
            let g = inner
                .groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group));
            match value.and_then(|v| serde_json::from_slice::<Committed>(v).ok()) {
                Some(c) => {
                    g.offsets.insert((topic, partition), c);
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Key::Group { group } => {
            match value.and_then(|v| serde_json::from_slice::<GroupRecord>(v).ok()) {
                Some(r) => {
                    let g = inner
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group));
                    g.generation = r.generation;
                    g.protocol_type = r.protocol_type;
                }
                None => {
                    inner.groups.remove(&group);
                }
            }
        }
        Key::ProducerIds => {
            if let Some(r) = value.and_then(|v| serde_json::from_slice::<ProducerIdRecord>(v).ok())
            {
                inner.producer_id_block_end = inner.producer_id_block_end.max(r.next);
            }
        }
    }
}
