//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! DescribeCluster.

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
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_log::{LogError, TOPIC_KEYS, TopicConfig};

use crate::Shared;
use crate::errors::{NONE, c, code};
use crate::frame::encode_response;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => 7,
        "message.timestamp.type" => 2,
        "index.interval.bytes" | "max.message.bytes" => 3,
        "auto.create.topics.enable" => 1,
        _ => 5,
    }
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
                    fill_result(&mut r, &effective, &configs, partitions);
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
                fill_result(&mut r, &info.config, &configs, partitions);
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

fn fill_result(
    r: &mut CreatableTopicResult,
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
    partitions: i32,
) {
    r.num_partitions = partitions;
    r.replication_factor = 1;
    r.configs = Some(
        TOPIC_KEYS
            .iter()
            .map(|k| {
                let mut c = CreatableTopicConfigs::default();
                c.name = s(*k);
                c.value = config.get(k).map(s);
                c.config_source = if overrides.contains_key(*k) {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                };
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

pub(crate) fn describe_configs(
    shared: &Arc<Shared>,
    req: DescribeConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
        };
        let entry = |k: &str, v: String, source: i8| {
            let mut e = DescribeConfigsResourceResult::default();
            e.name = s(k);
            e.value = Some(s(v));
            e.config_source = source;
            if version >= 3 {
                e.config_type = config_type(k);
            }
            e
        };
        match res.resource_type {
            RESOURCE_TOPIC => match shared.storage.topic(res.resource_name.as_str()) {
                Some(info) => {
                    for k in TOPIC_KEYS.iter().filter(|k| wanted(k)) {
                        let source = if info.overrides.contains_key(*k) {
                            SOURCE_DYNAMIC_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        r.configs
                            .push(entry(k, info.config.get(k).unwrap_or_default(), source));
                    }
                }
                None => {
                    r.error_code = c(ResponseError::UnknownTopicOrPartition);
                    r.error_message =
                        Some(s(format!("unknown topic {}", res.resource_name.as_str())));
                }
            },
            RESOURCE_BROKER => {
                let d = shared.storage.defaults();
                let broker = [
                    ("node.id", shared.cfg.node_id.to_string()),
                    ("num.partitions", shared.cfg.num_partitions.to_string()),
                    (
                        "auto.create.topics.enable",
                        shared.cfg.auto_create_topics.to_string(),
                    ),
                    (
                        "socket.request.max.bytes",
                        shared.cfg.max_request_bytes.to_string(),
                    ),
                    ("log.retention.ms", d.retention_ms.to_string()),
                    ("log.retention.bytes", d.retention_bytes.to_string()),
                    ("log.segment.bytes", d.segment_bytes.to_string()),
                    (
                        "log.cleanup.policy",
                        d.get("cleanup.policy").unwrap_or_default(),
                    ),
                    ("message.max.bytes", d.max_message_bytes.to_string()),
                ];
                for (k, v) in broker.into_iter().filter(|(k, _)| wanted(k)) {
                    r.configs.push(entry(k, v, SOURCE_STATIC_BROKER));
                }
            }
            other => {
                r.error_code = c(ResponseError::InvalidRequest);
                r.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(r);
    }
    encode_response(corr, version, &resp)
}

pub(crate) fn describe_cluster(
    shared: &Arc<Shared>,
    _req: DescribeClusterRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = s(shared.cfg.cluster_id.clone());
    resp.controller_id = BrokerId(shared.cfg.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(shared.cfg.node_id);
    b.host = s(shared.advertised.0.clone());
    b.port = i32::from(shared.advertised.1);
    resp.brokers = vec![b];
    encode_response(corr, version, &resp)
}

/// New overrides after applying (op, key, value) changes; ops as IncrementalAlterConfigs:
/// 0 set, 1 delete, 2 append (to a list), 3 subtract (from a list).
fn apply_ops(
    current: &BTreeMap<String, String>,
    defaults: &TopicConfig,
    ops: &[(i8, String, Option<String>)],
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut next = current.clone();
    for (op, key, value) in ops {
        if !TOPIC_KEYS.contains(&key.as_str()) {
            return Err((
                c(ResponseError::InvalidConfig),
                format!("unknown topic config {key}"),
            ));
        }
        let list = |m: &BTreeMap<String, String>| -> Vec<String> {
            m.get(key)
                .cloned()
                .or_else(|| defaults.get(key))
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match op {
            0 => {
                next.insert(key.clone(), value.clone().unwrap_or_default());
            }
            1 => {
                next.remove(key);
            }
            2 | 3 if key == "cleanup.policy" => {
                let mut items = list(&next);
                for v in value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if *op == 2 && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    }
                    if *op == 3 {
                        items.retain(|i| i != v);
                    }
                }
                next.insert(key.clone(), items.join(","));
            }
            2 | 3 => {
                return Err((
                    c(ResponseError::InvalidConfig),
                    format!("{key} is not a list config"),
                ));
            }
            other => {
                return Err((
                    c(ResponseError::InvalidRequest),
                    format!("unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(next)
}

fn alter_topic(
    shared: &Shared,
    name: &str,
    ops: &[(i8, String, Option<String>)],
    incremental: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let Some(info) = shared.storage.topic(name) else {
        return Err((
            c(ResponseError::UnknownTopicOrPartition),
            format!("unknown topic {name}"),
        ));
    };
    // The legacy AlterConfigs replaces the whole set of overrides.
    let base = if incremental {
        info.overrides.clone()
    } else {
        BTreeMap::new()
    };
    let defaults = shared.storage.defaults();
    let next = apply_ops(&base, &defaults, ops)?;
    defaults
        .with_overrides(&next)
        .map_err(|e| (code(&e), e.to_string()))?;
    if !validate_only {
        shared
            .storage
            .alter_topic_config(name, next)
            .map_err(|e| (code(&e), e.to_string()))?;
    }
    Ok(())
}

fn alter_result(r: Result<(), (i16, String)>) -> (i16, Option<StrBytes>) {
    match r {
        Ok(()) => (NONE, None),
        Err((e, m)) => (e, Some(s(m))),
    }
}

/// One AlterConfigs or IncrementalAlterConfigs resource: only topics can be altered.
fn alter_resource(
    shared: &Shared,
    resource_type: i8,
    name: &str,
    ops: &[(i8, String, Option<String>)],
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let outcome = if resource_type == RESOURCE_TOPIC {
        alter_topic(shared, name, ops, incremental, validate_only)
    } else {
        Err((
            c(ResponseError::InvalidRequest),
            "only topic configs can be altered".to_string(),
        ))
    };
    alter_result(outcome)
}

pub(crate) fn alter_configs(
    shared: &Arc<Shared>,
    req: AlterConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        // The legacy API only sets keys (and replaces the whole set of overrides).
        let ops: Vec<_> = res
            .configs
            .iter()
            .map(|c| {
                (
                    0i8,
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        (r.error_code, r.error_message) = alter_resource(
            shared,
            res.resource_type,
            res.resource_name.as_str(),
            &ops,
            false,
            req.validate_only,
        );
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        resp.responses.push(r);
    }
    encode_response(corr, version, &resp)
}

pub(crate) fn incremental_alter_configs(
    shared: &Arc<Shared>,
    req: IncrementalAlterConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<Bytes, String> {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        let ops: Vec<_> = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.config_operation,
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        (r.error_code, r.error_message) = alter_resource(
            shared,
            res.resource_type,
            res.resource_name.as_str(),
            &ops,
            true,
            req.validate_only,
        );
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        resp.responses.push(r);
    }
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
