//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeLogDirs, DescribeCluster. Configs are in `configs.rs`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_log::{LogError, TopicInfo};

use crate::Shared;
use crate::errors::{NONE, c, code};
use crate::frame::encode_response;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) fn create_topics(
    shared: &Arc<Shared>,
    req: CreateTopicsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = CreateTopicsResponse::default();
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|n| !seen.insert(n.clone()))
        .collect();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let mut configs = BTreeMap::new();
        for cfg in &t.configs {
            if let Some(v) = &cfg.value {
                configs.insert(cfg.name.to_string(), v.to_string());
            }
        }
        let partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                shared.cfg.num_partitions as i32
            } else {
                t.assignments.len() as i32
            }
        } else {
            t.num_partitions
        };
        let result: Result<(), (i16, String)> = (|| {
            if dupes.contains(&name) {
                return Err((
                    c(ResponseError::InvalidRequest),
                    format!("topic {name} appears more than once"),
                ));
            }
            if t.replication_factor != -1 && t.replication_factor != 1 {
                return Err((
                    c(ResponseError::InvalidReplicationFactor),
                    format!(
                        "replication factor {} is larger than the 1 available broker",
                        t.replication_factor
                    ),
                ));
            }
            if partitions < 1 {
                return Err((
                    c(ResponseError::InvalidPartitions),
                    format!("partition count {partitions} is below 1"),
                ));
            }
            if shared.storage.topic(&name).is_some() {
                return Err((
                    c(ResponseError::TopicAlreadyExists),
                    format!("topic {name} already exists"),
                ));
            }
            weir_log::validate_topic_name(&name).map_err(|e| (code(&e), e.to_string()))?;
            let effective = shared
                .storage
                .defaults()
                .with_overrides(&configs)
                .map_err(|e| (code(&e), e.to_string()))?;
            if req.validate_only {
                if version >= 5 {
                    let info = TopicInfo {
                        name: name.clone(),
                        id: uuid::Uuid::nil(),
                        partitions: partitions as u32,
                        overrides: configs.clone(),
                        config: Arc::new(effective),
                    };
                    fill_result(shared, &mut r, &info);
                }
                return Ok(());
            }
            let info = shared
                .storage
                .create_topic(&name, partitions as u32, configs.clone())
                .map_err(|e| (code(&e), e.to_string()))?;
            if version >= 7 {
                r.topic_id = info.id;
            }
            if version >= 5 {
                fill_result(shared, &mut r, &info);
            }
            Ok(())
        })();
        if let Err((err, msg)) = result {
            tracing::debug!(topic = %name, error = %msg, "create topic refused");
            r.error_code = err;
            r.error_message = Some(s(msg));
        }
        resp.topics.push(r);
    }
    encode_response(corr, version, &resp)
}

/// The configs a created topic ends up with, as DescribeConfigs would report them.
fn fill_result(shared: &Shared, r: &mut CreatableTopicResult, info: &TopicInfo) {
    r.num_partitions = info.partitions as i32;
    r.replication_factor = 1;
    r.configs = Some(
        crate::configs::topic_entries(shared, info)
            .into_iter()
            .map(|e| {
                let mut c = CreatableTopicConfigs::default();
                c.name = s(e.name);
                c.value = Some(s(e.value));
                c.read_only = e.read_only;
                c.config_source = e.source;
                c
            })
            .collect(),
    );
}

pub(crate) fn delete_topics(
    shared: &Arc<Shared>,
    req: DeleteTopicsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = DeleteTopicsResponse::default();
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        if version >= 6 {
            r.topic_id = id;
        }
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => shared
                .storage
                .topics()
                .into_iter()
                .find(|t| t.id == id)
                .map(|t| t.name),
        };
        r.name = resolved.clone().map(|n| TopicName(s(n)));
        match resolved {
            None => r.error_code = c(ResponseError::UnknownTopicId),
            Some(n) if n == crate::groups::OFFSETS_TOPIC => {
                r.error_code = c(ResponseError::InvalidTopicException);
                if version >= 5 {
                    r.error_message =
                        Some(s("the internal topic __consumer_offsets cannot be deleted"));
                }
            }
            Some(n) => match shared.storage.delete_topic(&n) {
                Ok(()) => r.error_code = NONE,
                Err(e) => {
                    r.error_code = code(&e);
                    if version >= 5 {
                        r.error_message = Some(s(e.to_string()));
                    }
                }
            },
        }
        resp.responses.push(r);
    }
    encode_response(corr, version, &resp)
}

pub(crate) fn create_partitions(
    shared: &Arc<Shared>,
    req: CreatePartitionsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let outcome = match shared.storage.topic(&name) {
            None => Err(LogError::UnknownTopicOrPartition(name.clone())),
            Some(info) if t.count <= info.partitions as i32 => {
                Err(LogError::InvalidPartitions(format!(
                    "topic {name} has {} partitions; the new count {} must be larger",
                    info.partitions, t.count
                )))
            }
            Some(_) if req.validate_only => Ok(()),
            Some(_) => shared.storage.create_partitions(&name, t.count as u32),
        };
        if let Err(e) = outcome {
            r.error_code = code(&e);
            r.error_message = Some(s(e.to_string()));
        }
        resp.results.push(r);
    }
    encode_response(corr, version, &resp)
}

pub(crate) fn describe_cluster(
    shared: &Arc<Shared>,
    req: DescribeClusterRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = DescribeClusterResponse::default();
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = crate::acl::CLUSTER_OPERATIONS;
    }
    resp.cluster_id = s(shared.cfg.cluster_id.clone());
    resp.controller_id = BrokerId(shared.cfg.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(shared.cfg.node_id);
    b.host = s(shared.advertised.0.clone());
    b.port = i32::from(shared.advertised.1);
    resp.brokers = vec![b];
    encode_response(corr, version, &resp)
}

pub(crate) fn delete_records(
    shared: &Arc<Shared>,
    req: DeleteRecordsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = delete_records_response::DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = delete_records_response::DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            match shared
                .storage
                .delete_records(t.name.0.as_str(), p.partition_index, p.offset)
            {
                Ok(low) => pr.low_watermark = low,
                Err(e) => {
                    pr.low_watermark = -1;
                    pr.error_code = code(&e);
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    encode_response(corr, version, &resp)
}

pub(crate) fn describe_log_dirs(
    shared: &Arc<Shared>,
    req: DescribeLogDirsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let (dir, parts) = shared.storage.log_dir();
    let wanted = |t: &str, p: i32| {
        req.topics.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|x| x.topic.0.as_str() == t && x.partitions.contains(&p))
        })
    };
    let mut result = describe_log_dirs_response::DescribeLogDirsResult::default();
    result.log_dir = s(dir);
    result.total_bytes = -1;
    result.usable_bytes = -1;
    let mut by_topic: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for (t, p, size) in parts {
        if wanted(&t, p) {
            by_topic.entry(t).or_default().push((p, size));
        }
    }
    for (t, ps) in by_topic {
        let mut dt = describe_log_dirs_response::DescribeLogDirsTopic::default();
        dt.name = TopicName(s(t));
        for (p, size) in ps {
            let mut dp = describe_log_dirs_response::DescribeLogDirsPartition::default();
            dp.partition_index = p;
            dp.partition_size = size as i64;
            dt.partitions.push(dp);
        }
        result.topics.push(dt);
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results = vec![result];
    encode_response(corr, version, &resp)
}
