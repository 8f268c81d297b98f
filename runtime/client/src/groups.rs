//! Consumer group operations: list, describe, committed offsets, commits, deletion, and a
//! minimal group member (range assignor) for `weir consume --group`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::{Client, ClientError, check};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// Assigned (topic, partitions), decoded from the consumer protocol.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberInfo>,
}

/// Encodes a consumer-protocol subscription (version 0: topics and no user data).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics.iter().map(|t| s(t)).collect();
    let mut b = BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    // Encoding into memory cannot fail for a well-formed struct.
    let _ = sub.encode(&mut b, 0);
    b.freeze()
}

fn decode_versioned<T: Decodable>(bytes: &Bytes) -> Option<T> {
    let mut b = bytes.clone();
    if b.len() < 2 {
        return None;
    }
    let v = b.get_i16().clamp(0, 3);
    T::decode(&mut b, v).ok()
}

/// Decodes a consumer-protocol assignment into (topic, partitions).
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, Vec<i32>)> {
    decode_versioned::<ConsumerProtocolAssignment>(bytes)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                .collect()
        })
        .unwrap_or_default()
}

fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = parts
        .iter()
        .map(|(t, ps)| {
            let mut tp = consumer_protocol_assignment::TopicPartition::default();
            tp.topic = TopicName(s(t));
            tp.partitions = ps.clone();
            tp
        })
        .collect();
    let mut b = BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    let _ = a.encode(&mut b, 0);
    b.freeze()
}

impl Client {
    /// Every group: (id, protocol type, state).
    pub async fn list_groups(&self) -> Result<Vec<(String, String, String)>, ClientError> {
        let resp = self.send(ListGroupsRequest::default()).await?;
        check("list groups", resp.error_code, None)?;
        let mut v: Vec<_> = resp
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.group_id.0.to_string(),
                    g.protocol_type.to_string(),
                    g.group_state.to_string(),
                )
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// One group's state and members.
    pub async fn describe_group(&self, group: &str) -> Result<GroupInfo, ClientError> {
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(s(group))];
        let resp = self.send(req).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups response".into()))?;
        check(
            format!("describe group {group}"),
            g.error_code,
            g.error_message.as_ref(),
        )?;
        Ok(GroupInfo {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| MemberInfo {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: decode_assignment(&m.member_assignment),
                })
                .collect(),
        })
    }

    /// Committed offsets of every partition the group has committed.
    pub async fn committed(
        &self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let mut req = OffsetFetchRequest::default();
        let v = self.version_for::<OffsetFetchRequest>()?;
        if v >= 8 {
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s(group));
            g.topics = None;
            req.groups = vec![g];
        } else {
            req.group_id = GroupId(s(group));
            req.topics = None;
        }
        let resp = self.send(req).await?;
        let mut out = BTreeMap::new();
        if v >= 8 {
            for g in resp.groups {
                check(format!("committed offsets of {group}"), g.error_code, None)?;
                for t in g.topics {
                    for p in t.partitions {
                        if p.committed_offset >= 0 {
                            out.insert(
                                (t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
            }
        } else {
            check(
                format!("committed offsets of {group}"),
                resp.error_code,
                None,
            )?;
            for t in resp.topics {
                for p in t.partitions {
                    if p.committed_offset >= 0 {
                        out.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Commits offsets for a group. `generation` -1 with an empty member id is a standalone
    /// commit, which the coordinator accepts only while the group has no members.
    pub async fn commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id_or_member_epoch = generation;
        req.member_id = s(member_id);
        req.retention_time_ms = -1;
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            by_topic.entry(t).or_default().push((*p, *o));
        }
        for (t, ps) in by_topic {
            let mut rt = offset_commit_request::OffsetCommitRequestTopic::default();
            rt.name = TopicName(s(t));
            for (p, o) in ps {
                let mut rp = offset_commit_request::OffsetCommitRequestPartition::default();
                rp.partition_index = p;
                rp.committed_offset = o;
                rp.committed_metadata = Some(StrBytes::new());
                rt.partitions.push(rp);
            }
            req.topics.push(rt);
        }
        let resp = self.send(req).await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == ResponseError::UnknownMemberId.code() && member_id.is_empty() {
                    return Err(ClientError::Broker {
                        what: format!("commit for group {group}"),
                        code: p.error_code,
                        message: "the group has active members; stop them first".into(),
                    });
                }
                check(
                    format!(
                        "commit {}-{} for group {group}",
                        t.name.0.as_str(),
                        p.partition_index
                    ),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(s(group))];
        let resp = self.send(req).await?;
        for r in resp.results {
            check(format!("delete group {group}"), r.error_code, None)?;
        }
        Ok(())
    }
}

/// A group member with the range assignor, driven by its owner: call [`GroupMember::join`],
/// then [`GroupMember::heartbeat`] regularly; when it returns `true`, rejoin.
#[derive(Debug)]
pub struct GroupMember {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub topics: Vec<String>,
    /// This member's partitions.
    pub assignment: Vec<(String, Vec<i32>)>,
    pub session_timeout: Duration,
}

impl GroupMember {
    pub fn new(group: &str, topics: Vec<String>) -> GroupMember {
        GroupMember {
            group: group.to_string(),
            member_id: String::new(),
            generation: -1,
            topics,
            assignment: Vec::new(),
            session_timeout: Duration::from_secs(10),
        }
    }

    /// Joins (or rejoins) the group and gets this member's assignment.
    pub async fn join(&mut self, client: &Client) -> Result<(), ClientError> {
        for _ in 0..20 {
            let mut req = JoinGroupRequest::default();
            req.group_id = GroupId(s(&self.group));
            req.session_timeout_ms = self.session_timeout.as_millis() as i32;
            req.rebalance_timeout_ms = 30_000;
            req.member_id = s(&self.member_id);
            req.protocol_type = s("consumer");
            let mut p = join_group_request::JoinGroupRequestProtocol::default();
            p.name = s("range");
            p.metadata = encode_subscription(&self.topics);
            req.protocols = vec![p];
            let resp = client.send(req).await?;
            if resp.error_code == ResponseError::MemberIdRequired.code()
                || resp.error_code == ResponseError::UnknownMemberId.code()
            {
                self.member_id = if resp.error_code == ResponseError::MemberIdRequired.code() {
                    resp.member_id.to_string()
                } else {
                    String::new()
                };
                continue;
            }
            if resp.error_code == ResponseError::RebalanceInProgress.code() {
                continue;
            }
            check(format!("join group {}", self.group), resp.error_code, None)?;
            self.member_id = resp.member_id.to_string();
            self.generation = resp.generation_id;
            let mut sync = SyncGroupRequest::default();
            sync.group_id = GroupId(s(&self.group));
            sync.generation_id = self.generation;
            sync.member_id = s(&self.member_id);
            if resp.leader == resp.member_id {
                let members: Vec<(String, Vec<String>)> = resp
                    .members
                    .iter()
                    .map(|m| {
                        let topics = decode_versioned::<ConsumerProtocolSubscription>(&m.metadata)
                            .map(|sub| sub.topics.iter().map(|t| t.to_string()).collect())
                            .unwrap_or_default();
                        (m.member_id.to_string(), topics)
                    })
                    .collect();
                let mut plan = range_assign(client, &members).await?;
                sync.assignments = members
                    .iter()
                    .map(|(id, _)| {
                        let mut a = sync_group_request::SyncGroupRequestAssignment::default();
                        a.member_id = s(id);
                        a.assignment = encode_assignment(&plan.remove(id).unwrap_or_default());
                        a
                    })
                    .collect();
            }
            let sresp = client.send(sync).await?;
            if sresp.error_code == ResponseError::RebalanceInProgress.code() {
                continue;
            }
            check(format!("sync group {}", self.group), sresp.error_code, None)?;
            self.assignment = decode_assignment(&sresp.assignment);
            return Ok(());
        }
        Err(ClientError::Protocol(format!(
            "could not join group {} after 20 attempts",
            self.group
        )))
    }

    /// Sends a heartbeat; `Ok(true)` means a rebalance started and the member must rejoin.
    pub async fn heartbeat(&mut self, client: &Client) -> Result<bool, ClientError> {
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(s(&self.group));
        req.generation_id = self.generation;
        req.member_id = s(&self.member_id);
        let resp = client.send(req).await?;
        let e = resp.error_code;
        if e == ResponseError::RebalanceInProgress.code()
            || e == ResponseError::IllegalGeneration.code()
        {
            return Ok(true);
        }
        if e == ResponseError::UnknownMemberId.code() {
            self.member_id.clear();
            return Ok(true);
        }
        check("heartbeat", e, None)?;
        Ok(false)
    }

    /// Leaves the group.
    pub async fn leave(&self, client: &Client) -> Result<(), ClientError> {
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(s(&self.group));
        let v = client.version_for::<LeaveGroupRequest>()?;
        if v >= 3 {
            let mut m = leave_group_request::MemberIdentity::default();
            m.member_id = s(&self.member_id);
            req.members = vec![m];
        } else {
            req.member_id = s(&self.member_id);
        }
        client.send(req).await?;
        Ok(())
    }
}

/// The range assignor: per topic, partitions split into contiguous ranges over the sorted
/// members subscribed to it.
async fn range_assign(
    client: &Client,
    members: &[(String, Vec<String>)],
) -> Result<BTreeMap<String, Vec<(String, Vec<i32>)>>, ClientError> {
    let mut topics: Vec<String> = members
        .iter()
        .flat_map(|(_, ts)| ts.iter().cloned())
        .collect();
    topics.sort();
    topics.dedup();
    let mut plan: BTreeMap<String, Vec<(String, Vec<i32>)>> = BTreeMap::new();
    for t in topics {
        let n = client.partitions(&t).await?;
        let mut subs: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(&t))
            .map(|(id, _)| id)
            .collect();
        subs.sort();
        let k = subs.len() as i32;
        if k == 0 {
            continue;
        }
        let (per, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, id) in subs.into_iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            if count > 0 {
                plan.entry(id.clone())
                    .or_default()
                    .push((t.clone(), (next..next + count).collect()));
            }
            next += count;
        }
    }
    Ok(plan)
}
