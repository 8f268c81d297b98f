//! Kafka APIs of the group coordinator and InitProducerId.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::Shared;
use crate::conn::{Reply, ready};
use crate::errors::c;
use crate::frame::encode_response;
use crate::groups::{Committed, Written, code};

/// A topic's partitions with their committed offsets, if any.
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Waits for a coordinator write to be durable when the flush policy asks for it.
pub(crate) async fn durable(shared: &Shared, w: Written) -> Result<(), String> {
    if !w.needs_sync {
        return Ok(());
    }
    match shared
        .syncer
        .request(crate::groups::OFFSETS_TOPIC, 0, w.up_to)
        .await
    {
        Ok(r) => r,
        Err(_) => Err("the fsync thread has stopped".into()),
    }
}

pub(crate) fn find_coordinator(
    shared: &Arc<Shared>,
    req: FindCoordinatorRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = FindCoordinatorResponse::default();
    let (host, port) = (
        s(shared.advertised.0.clone()),
        i32::from(shared.advertised.1),
    );
    let node = BrokerId(shared.cfg.node_id);
    // This broker coordinates groups (key type 0) and answers for transactional ids (1) too,
    // so that the client's next request, a transactional InitProducerId, gets the clear
    // "unsupported" refusal instead of the client retrying a coordinator lookup until it
    // times out.
    let err = if matches!(req.key_type, 0 | 1) {
        code::NONE
    } else {
        c(ResponseError::InvalidRequest)
    };
    if version >= 4 {
        for key in req.coordinator_keys {
            let mut e = CoordinatorEntry::default();
            e.key = key;
            e.error_code = err;
            if err == code::NONE {
                e.node_id = node;
                e.host = host.clone();
                e.port = port;
            } else {
                e.node_id = BrokerId(-1);
                e.port = -1;
                e.error_message = Some(s("unknown coordinator key type"));
            }
            resp.coordinators.push(e);
        }
    } else {
        resp.error_code = err;
        if err == code::NONE {
            resp.node_id = node;
            resp.host = host;
            resp.port = port;
        } else {
            resp.node_id = BrokerId(-1);
            resp.port = -1;
            if version >= 1 {
                resp.error_message = Some(s("unknown coordinator key type"));
            }
        }
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn join_group(
    shared: &Arc<Shared>,
    req: JoinGroupRequest,
    version: i16,
    corr: i32,
    client_id: String,
    host: String,
) -> Reply {
    let protocols = req
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    let rebalance = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let rx = shared.groups.join(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.to_string()),
        &client_id,
        &host,
        req.session_timeout_ms,
        rebalance,
        req.protocol_type.as_str(),
        protocols,
        version >= 4 && req.group_instance_id.is_none(),
    );
    Box::pin(async move {
        let r = rx.await.map_err(|_| "join abandoned".to_string())?;
        let mut resp = JoinGroupResponse::default();
        resp.error_code = r.error;
        resp.generation_id = r.generation;
        if version >= 7 {
            resp.protocol_type = Some(s(r.protocol_type));
            resp.protocol_name = Some(s(r.protocol));
        } else {
            resp.protocol_name = Some(s(r.protocol));
        }
        resp.leader = s(r.leader);
        if version >= 9 {
            resp.skip_assignment = r.skip_assignment;
        }
        resp.member_id = s(r.member_id);
        resp.members = r
            .members
            .into_iter()
            .map(|(id, iid, meta)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = s(id);
                if version >= 5 {
                    m.group_instance_id = iid.map(s);
                }
                m.metadata = meta;
                m
            })
            .collect();
        encode_response(corr, version, &resp).map(Some)
    })
}

pub(crate) fn sync_group(
    shared: &Arc<Shared>,
    req: SyncGroupRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let rx = shared.groups.sync(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.as_str()),
        assignments,
    );
    Box::pin(async move {
        let r = rx.await.map_err(|_| "sync abandoned".to_string())?;
        let mut resp = SyncGroupResponse::default();
        resp.error_code = r.error;
        resp.assignment = r.assignment;
        if version >= 5 && r.error == code::NONE {
            resp.protocol_type = Some(s(r.protocol_type));
            resp.protocol_name = Some(s(r.protocol));
        }
        encode_response(corr, version, &resp).map(Some)
    })
}

pub(crate) fn heartbeat(
    shared: &Arc<Shared>,
    req: HeartbeatRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = HeartbeatResponse::default();
    resp.error_code = shared.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.as_str()),
    );
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn leave_group(
    shared: &Arc<Shared>,
    req: LeaveGroupRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let (top, codes) = shared
        .groups
        .leave(req.group_id.0.as_str(), members.clone());
    let mut resp = LeaveGroupResponse::default();
    if version >= 3 {
        resp.members = members
            .into_iter()
            .zip(codes)
            .map(|((id, iid), code)| {
                let mut m = MemberResponse::default();
                m.member_id = s(id);
                m.group_instance_id = iid.map(s);
                m.error_code = code;
                m
            })
            .collect();
    } else {
        resp.error_code = top;
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn offset_commit(
    shared: &Arc<Shared>,
    req: OffsetCommitRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let group = req.group_id.0.to_string();
    let check = shared.groups.check_commit(
        &group,
        req.generation_id_or_member_epoch,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.as_str()),
    );
    let now = weir_log::now_ms();
    let mut resp = OffsetCommitResponse::default();
    let mut to_write = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let parts = shared.storage.topic(&name).map(|i| i.partitions as i32);
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = if check != code::NONE {
                check
            } else if parts.is_none_or(|n| p.partition_index < 0 || p.partition_index >= n) {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                to_write.push((
                    name.clone(),
                    p.partition_index,
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_ms: now,
                    },
                ));
                code::NONE
            };
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    let written = if to_write.is_empty() {
        Ok(None)
    } else {
        shared.groups.commit(&group, to_write).map(Some)
    };
    let shared = shared.clone();
    Box::pin(async move {
        let outcome = match written {
            Ok(Some(w)) => durable(&shared, w).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            tracing::error!(group = %group, error = %e, "offset commit not stored");
            for t in &mut resp.topics {
                for p in &mut t.partitions {
                    if p.error_code == code::NONE {
                        p.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    }
                }
            }
        }
        encode_response(corr, version, &resp).map(Some)
    })
}

pub(crate) fn offset_fetch(
    shared: &Arc<Shared>,
    req: OffsetFetchRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = OffsetFetchResponse::default();
    let lookup = |group: &str, topics: Option<Vec<(String, Vec<i32>)>>| -> Vec<TopicOffsets> {
        let committed = shared.groups.fetch_offsets(group);
        match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, committed.get(&(t.clone(), p)).cloned()))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<
                    String,
                    Vec<(i32, Option<Committed>)>,
                > = Default::default();
                for ((t, p), c) in committed {
                    by_topic.entry(t).or_default().push((p, Some(c)));
                }
                by_topic.into_iter().collect()
            }
        }
    };
    if version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            for (t, parts) in lookup(g.group_id.0.as_str(), topics) {
                let mut tr = OffsetFetchResponseTopics::default();
                tr.name = TopicName(s(t));
                for (p, c) in parts {
                    let mut pr = OffsetFetchResponsePartitions::default();
                    pr.partition_index = p;
                    pr.committed_offset = c.as_ref().map(|c| c.offset).unwrap_or(-1);
                    pr.committed_leader_epoch = c.as_ref().map(|c| c.leader_epoch).unwrap_or(-1);
                    pr.metadata = Some(s(c.map(|c| c.metadata).unwrap_or_default()));
                    tr.partitions.push(pr);
                }
                gr.topics.push(tr);
            }
            resp.groups.push(gr);
        }
    } else {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        for (t, parts) in lookup(req.group_id.0.as_str(), topics) {
            let mut tr = OffsetFetchResponseTopic::default();
            tr.name = TopicName(s(t));
            for (p, c) in parts {
                let mut pr = OffsetFetchResponsePartition::default();
                pr.partition_index = p;
                pr.committed_offset = c.as_ref().map(|c| c.offset).unwrap_or(-1);
                if version >= 5 {
                    pr.committed_leader_epoch = c.as_ref().map(|c| c.leader_epoch).unwrap_or(-1);
                }
                pr.metadata = Some(s(c.map(|c| c.metadata).unwrap_or_default()));
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn describe_groups(
    shared: &Arc<Shared>,
    req: DescribeGroupsRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = DescribeGroupsResponse::default();
    for gid in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = gid.clone();
        if version >= 3 && req.include_authorized_operations {
            d.authorized_operations = crate::acl::GROUP_OPERATIONS;
        }
        let found = shared.groups.with_group(gid.0.as_str(), |g| {
            d.group_state = s(g.state.name());
            d.protocol_type = s(g.protocol_type.clone());
            d.protocol_data = s(g.protocol.clone());
            d.members = g
                .members
                .values()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default();
                    dm.member_id = s(m.id.clone());
                    if version >= 4 {
                        dm.group_instance_id = m.instance_id.clone().map(s);
                    }
                    dm.client_id = s(m.client_id.clone());
                    dm.client_host = s(m.client_host.clone());
                    dm.member_metadata = m.metadata(&g.protocol);
                    dm.member_assignment = m.assignment.clone();
                    dm
                })
                .collect();
        });
        if found.is_none() {
            // Kafka describes an unknown group as Dead with no members.
            d.group_state = s("Dead");
        }
        resp.groups.push(d);
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn list_groups(
    shared: &Arc<Shared>,
    req: ListGroupsRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = ListGroupsResponse::default();
    for (id, ptype, state) in shared.groups.list() {
        if !req.states_filter.is_empty()
            && !req
                .states_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(state.name()))
        {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(s(id));
        g.protocol_type = s(ptype);
        if version >= 4 {
            g.group_state = s(state.name());
        }
        resp.groups.push(g);
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn delete_groups(
    shared: &Arc<Shared>,
    req: DeleteGroupsRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = DeleteGroupsResponse::default();
    for gid in req.groups_names {
        let mut r = delete_groups_response::DeletableGroupResult::default();
        r.error_code = match shared.groups.delete_group(gid.0.as_str()) {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(group = %gid.0.as_str(), error = %e, "delete group failed");
                code::COORDINATOR_NOT_AVAILABLE
            }
        };
        r.group_id = gid;
        resp.results.push(r);
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn offset_delete(
    shared: &Arc<Shared>,
    req: OffsetDeleteRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = OffsetDeleteResponse::default();
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    match shared.groups.delete_offsets(req.group_id.0.as_str(), parts) {
        Ok((top, codes)) => {
            resp.error_code = top;
            let mut codes = codes.into_iter();
            for t in req.topics {
                let mut tr = OffsetDeleteResponseTopic::default();
                tr.name = t.name.clone();
                for p in t.partitions {
                    let mut pr = OffsetDeleteResponsePartition::default();
                    pr.partition_index = p.partition_index;
                    pr.error_code = codes.next().unwrap_or(code::NONE);
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "offset delete failed");
            resp.error_code = code::COORDINATOR_NOT_AVAILABLE;
        }
    }
    ready(encode_response(corr, version, &resp))
}

pub(crate) fn init_producer_id(
    shared: &Arc<Shared>,
    req: InitProducerIdRequest,
    version: i16,
    corr: i32,
) -> Reply {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        tracing::info!(
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        resp.error_code = c(ResponseError::UnsupportedVersion);
        return ready(encode_response(corr, version, &resp));
    }
    // A producer that asks to bump its epoch keeps its id (KIP-360).
    if version >= 3 && req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch.saturating_add(1);
        return ready(encode_response(corr, version, &resp));
    }
    let shared = shared.clone();
    let allocated = shared.groups.next_producer_id();
    Box::pin(async move {
        match allocated {
            Ok((id, written)) => {
                if let Some(w) = written
                    && let Err(e) = durable(&shared, w).await
                {
                    tracing::error!(error = %e, "producer id block not stored");
                    resp.error_code = code::COORDINATOR_NOT_AVAILABLE;
                    return encode_response(corr, version, &resp).map(Some);
                }
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "producer id allocation failed");
                resp.error_code = code::COORDINATOR_NOT_AVAILABLE;
            }
        }
        encode_response(corr, version, &resp).map(Some)
    })
}
