//! Metadata: brokers, topics and partitions; auto-creates topics when allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_log::{LogError, TopicInfo};

use crate::Shared;
use crate::errors::{c, code};
use crate::frame::encode_response;

pub(crate) fn topic_response(
    shared: &Shared,
    info: &TopicInfo,
    version: i16,
    with_operations: bool,
) -> MetadataResponseTopic {
    let node = BrokerId(shared.cfg.node_id);
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(info.name.clone())));
    t.is_internal = info.name == crate::groups::OFFSETS_TOPIC;
    if version >= 10 {
        t.topic_id = info.id;
    }
    if version >= 8 && with_operations {
        t.topic_authorized_operations = crate::acl::TOPIC_OPERATIONS;
    }
    t.partitions = (0..info.partitions as i32)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p;
            mp.leader_id = node;
            if version >= 7 {
                mp.leader_epoch = 0;
            }
            mp.replica_nodes = vec![node];
            mp.isr_nodes = vec![node];
            mp
        })
        .collect();
    t
}

fn error_topic(name: &str, err: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    t.error_code = err;
    t
}

/// Looks a topic up, creating it if auto-creation is on and the client allows it.
pub(crate) fn get_or_create(
    shared: &Shared,
    name: &str,
    allow_create: bool,
) -> Result<TopicInfo, LogError> {
    if let Some(t) = shared.storage.topic(name) {
        return Ok(t);
    }
    if !(allow_create && shared.cfg.auto_create_topics) {
        return Err(LogError::UnknownTopicOrPartition(name.to_string()));
    }
    match shared
        .storage
        .create_topic(name, shared.cfg.num_partitions, BTreeMap::new())
    {
        Ok(t) => {
            tracing::info!(
                topic = name,
                partitions = shared.cfg.num_partitions,
                "auto-created topic"
            );
            Ok(t)
        }
        Err(LogError::TopicExists(_)) => shared
            .storage
            .topic(name)
            .ok_or_else(|| LogError::UnknownTopicOrPartition(name.to_string())),
        Err(e) => Err(e),
    }
}

pub(crate) fn handle(
    shared: &Arc<Shared>,
    req: MetadataRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut r = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(shared.cfg.node_id);
    b.host = StrBytes::from_string(shared.advertised.0.clone());
    b.port = i32::from(shared.advertised.1);
    r.brokers = vec![b];
    if version >= 2 {
        r.cluster_id = Some(StrBytes::from_string(shared.cfg.cluster_id.clone()));
    }
    if version >= 1 {
        r.controller_id = BrokerId(shared.cfg.node_id);
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        r.cluster_authorized_operations = crate::acl::CLUSTER_OPERATIONS;
    }
    let ops = version >= 8 && req.include_topic_authorized_operations;
    // v0 used an empty list to mean "all topics"; later versions use null.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    if all {
        r.topics = shared
            .storage
            .topics()
            .iter()
            .map(|t| topic_response(shared, t, version, ops))
            .collect();
    } else {
        let allow = version < 4 || req.allow_auto_topic_creation;
        for t in req.topics.unwrap_or_default() {
            let by_id = t.name.is_none() && !t.topic_id.is_nil();
            if by_id {
                match shared
                    .storage
                    .topics()
                    .into_iter()
                    .find(|i| i.id == t.topic_id)
                {
                    Some(info) => r.topics.push(topic_response(shared, &info, version, ops)),
                    None => {
                        let mut e = MetadataResponseTopic::default();
                        e.topic_id = t.topic_id;
                        e.error_code = c(ResponseError::UnknownTopicId);
                        r.topics.push(e);
                    }
                }
                continue;
            }
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            match get_or_create(shared, &name, allow) {
                Ok(info) => r.topics.push(topic_response(shared, &info, version, ops)),
                Err(e) => r.topics.push(error_topic(&name, code(&e))),
            }
        }
    }
    encode_response(corr, version, &r)
}
