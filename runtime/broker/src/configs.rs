//! Configs of topics and of the broker: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs, and the config list CreateTopics reports.
//!
//! A topic's value comes from the first layer that sets it, as in Kafka: the topic's own
//! override, this broker's dynamic config (resource = the node id), the cluster-wide dynamic
//! default (resource = ""), the static broker config (`weir.toml`), Kafka's default. The
//! dynamic broker layers hold the `log.*` defaults topics inherit (`log.retention.ms` sets
//! `retention.ms`); they are altered at run time and persisted by the storage engine. Broker
//! settings that only a restart can change are reported read-only and refused on alter.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_log::{
    BrokerOverrides, ConfigDef, ConfigType, TOPIC_CONFIGS, TopicConfig, TopicInfo, topic_config,
    topic_config_for_broker_key,
};

use crate::Shared;
use crate::errors::{NONE, c, code};
use crate::frame::encode_response;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` codes.
pub(crate) mod source {
    pub const DYNAMIC_TOPIC: i8 = 1;
    pub const DYNAMIC_BROKER: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
    pub const STATIC_BROKER: i8 = 4;
    pub const DEFAULT: i8 = 5;
}

/// IncrementalAlterConfigs operations.
mod op {
    pub const SET: i8 = 0;
    pub const DELETE: i8 = 1;
    pub const APPEND: i8 = 2;
    pub const SUBTRACT: i8 = 3;
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// One described config, before it is put into a response.
#[derive(Debug)]
pub(crate) struct Entry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub ty: ConfigType,
    pub doc: &'static str,
    /// Every layer that sets it, highest precedence first: (name, value, source).
    pub synonyms: Vec<(String, String, i8)>,
}

/// The layers below a topic's own override for `def`, highest precedence first.
fn broker_layers(
    def: &ConfigDef,
    overrides: &BrokerOverrides,
    static_defaults: &TopicConfig,
) -> Vec<(String, String, i8)> {
    let broker_name = def
        .synonyms
        .first()
        .copied()
        .unwrap_or(def.name)
        .to_string();
    let mut layers = Vec::new();
    if let Some(v) = overrides.node.get(def.name) {
        layers.push((broker_name.clone(), v.clone(), source::DYNAMIC_BROKER));
    }
    if let Some(v) = overrides.cluster.get(def.name) {
        layers.push((
            broker_name.clone(),
            v.clone(),
            source::DYNAMIC_DEFAULT_BROKER,
        ));
    }
    let kafka_default = TopicConfig::default().get(def.name).unwrap_or_default();
    let configured = static_defaults.get(def.name).unwrap_or_default();
    if configured != kafka_default {
        layers.push((broker_name.clone(), configured, source::STATIC_BROKER));
    }
    layers.push((broker_name, kafka_default, source::DEFAULT));
    layers
}

/// Every config of a topic, with where its value comes from.
pub(crate) fn topic_entries(shared: &Shared, info: &TopicInfo) -> Vec<Entry> {
    let overrides = shared.storage.broker_overrides();
    let static_defaults = shared.storage.static_defaults();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = info.overrides.get(def.name) {
                synonyms.push((def.name.to_string(), v.clone(), source::DYNAMIC_TOPIC));
            }
            synonyms.extend(broker_layers(def, &overrides, &static_defaults));
            Entry {
                name: def.name.to_string(),
                value: info.config.get(def.name).unwrap_or_default(),
                source: synonyms[0].2,
                read_only: false,
                ty: def.ty,
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// Broker settings that only a restart changes (from `weir.toml` and the command line).
fn read_only_broker_entries(
    shared: &Shared,
) -> Vec<(&'static str, String, ConfigType, &'static str)> {
    let cfg = &shared.cfg;
    let listener = format!("PLAINTEXT://{}", cfg.listen);
    let advertised = format!(
        "PLAINTEXT://{}:{}",
        shared.advertised.0, shared.advertised.1
    );
    vec![
        (
            "advertised.listeners",
            advertised,
            ConfigType::List,
            "where clients are told to connect",
        ),
        (
            "auto.create.topics.enable",
            cfg.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "create a topic on first use",
        ),
        (
            "broker.id",
            cfg.node_id.to_string(),
            ConfigType::Int,
            "this broker's id (= node.id)",
        ),
        (
            "default.replication.factor",
            "1".into(),
            ConfigType::Int,
            "one broker, one replica",
        ),
        (
            "fetch.max.bytes",
            cfg.fetch_max_bytes.to_string(),
            ConfigType::Int,
            "the most record bytes one fetch response carries",
        ),
        (
            "group.initial.rebalance.delay.ms",
            cfg.group.initial_rebalance_delay.as_millis().to_string(),
            ConfigType::Int,
            "wait for more members before a new group's first rebalance",
        ),
        (
            "group.max.session.timeout.ms",
            cfg.group.max_session_timeout.as_millis().to_string(),
            ConfigType::Int,
            "largest session timeout a member may ask for",
        ),
        (
            "group.min.session.timeout.ms",
            cfg.group.min_session_timeout.as_millis().to_string(),
            ConfigType::Int,
            "smallest session timeout a member may ask for",
        ),
        (
            "listeners",
            listener,
            ConfigType::List,
            "the Kafka listener",
        ),
        (
            "log.dirs",
            shared.storage.log_dir().0,
            ConfigType::String,
            "the data directory",
        ),
        (
            "node.id",
            cfg.node_id.to_string(),
            ConfigType::Int,
            "this broker's id",
        ),
        (
            "num.partitions",
            cfg.num_partitions.to_string(),
            ConfigType::Int,
            "partitions of an auto-created topic",
        ),
        (
            "offsets.topic.replication.factor",
            "1".into(),
            ConfigType::Short,
            "one broker, one replica",
        ),
        (
            "socket.request.max.bytes",
            cfg.max_request_bytes.to_string(),
            ConfigType::Int,
            "the largest request accepted",
        ),
    ]
}

/// The broker's configs: the read-only settings and, for every topic config with a broker
/// synonym, the default topics inherit. `cluster_default` describes resource "" instead: only
/// what is set there.
pub(crate) fn broker_entries(shared: &Shared, cluster_default: bool) -> Vec<Entry> {
    let overrides = shared.storage.broker_overrides();
    let static_defaults = shared.storage.static_defaults();
    let mut out = Vec::new();
    for def in TOPIC_CONFIGS {
        let Some(broker_name) = def.synonyms.first() else {
            continue;
        };
        let layers = broker_layers(def, &overrides, &static_defaults);
        if cluster_default {
            if let Some(l) = layers
                .iter()
                .find(|l| l.2 == source::DYNAMIC_DEFAULT_BROKER)
            {
                out.push(Entry {
                    name: broker_name.to_string(),
                    value: l.1.clone(),
                    source: l.2,
                    read_only: false,
                    ty: def.ty,
                    doc: def.doc,
                    synonyms: vec![l.clone()],
                });
            }
            continue;
        }
        out.push(Entry {
            name: broker_name.to_string(),
            value: layers[0].1.clone(),
            source: layers[0].2,
            read_only: false,
            ty: def.ty,
            doc: def.doc,
            synonyms: layers,
        });
    }
    if !cluster_default {
        let kafka_default = |k: &str| match k {
            "num.partitions"
            | "default.replication.factor"
            | "offsets.topic.replication.factor" => Some("1"),
            "auto.create.topics.enable" => Some("true"),
            "node.id" | "broker.id" => Some("0"),
            "socket.request.max.bytes" => Some("104857600"),
            _ => None,
        };
        for (name, value, ty, doc) in read_only_broker_entries(shared) {
            let src = if kafka_default(name) == Some(value.as_str()) {
                source::DEFAULT
            } else {
                source::STATIC_BROKER
            };
            out.push(Entry {
                name: name.to_string(),
                synonyms: vec![(name.to_string(), value.clone(), src)],
                value,
                source: src,
                read_only: true,
                ty,
                doc,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub(crate) fn describe_configs(
    shared: &Shared,
    req: DescribeConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<bytes::Bytes, String> {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        let entries = match res.resource_type {
            RESOURCE_TOPIC => match shared.storage.topic(name) {
                Some(info) => Ok(topic_entries(shared, &info)),
                None => Err((
                    c(ResponseError::UnknownTopicOrPartition),
                    format!("Topic {name} does not exist."),
                )),
            },
            RESOURCE_BROKER => {
                broker_scope(shared, name).map(|cluster| broker_entries(shared, cluster))
            }
            other => Err((
                c(ResponseError::InvalidRequest),
                format!("resource type {other} is not supported"),
            )),
        };
        match entries {
            Ok(entries) => {
                let wanted = |k: &str| {
                    res.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
                };
                r.configs = entries
                    .into_iter()
                    .filter(|e| wanted(&e.name))
                    .map(|e| {
                        let mut d = DescribeConfigsResourceResult::default();
                        d.name = s(e.name);
                        d.value = Some(s(e.value));
                        d.read_only = e.read_only;
                        d.config_source = e.source;
                        if req.include_synonyms {
                            d.synonyms = e
                                .synonyms
                                .into_iter()
                                .map(|(n, v, src)| {
                                    let mut y = DescribeConfigsSynonym::default();
                                    y.name = s(n);
                                    y.value = Some(s(v));
                                    y.source = src;
                                    y
                                })
                                .collect();
                        }
                        if version >= 3 {
                            d.config_type = e.ty as i8;
                            if req.include_documentation {
                                d.documentation = Some(s(e.doc));
                            }
                        }
                        d
                    })
                    .collect();
            }
            Err((err, msg)) => {
                r.error_code = err;
                r.error_message = Some(s(msg));
            }
        }
        resp.results.push(r);
    }
    encode_response(corr, version, &resp)
}

/// Which dynamic layer a BROKER resource name addresses: `true` for the cluster-wide default
/// (""), `false` for this broker (its node id).
fn broker_scope(shared: &Shared, name: &str) -> Result<bool, (i16, String)> {
    if name.is_empty() {
        return Ok(true);
    }
    let bad = |m: String| Err((c(ResponseError::InvalidRequest), m));
    match name.parse::<i32>() {
        Ok(id) if id == shared.cfg.node_id => Ok(false),
        Ok(id) => bad(format!(
            "Unexpected broker id, expected {}, but received {id}",
            shared.cfg.node_id
        )),
        Err(_) => bad(format!("Node id must be an integer, but it is: {name}")),
    }
}

/// One change: (operation, key, value).
type Op = (i8, String, Option<String>);
type AlterResult = Result<(), (i16, String)>;

fn invalid_config(msg: String) -> (i16, String) {
    (c(ResponseError::InvalidConfig), msg)
}

/// Applies `ops` to `current` (keyed by topic config name). `current_value` gives the value
/// an APPEND or SUBTRACT starts from when the key is not in `current`.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(i8, &'static ConfigDef, String, Option<String>)],
    current_value: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut next = current.clone();
    for (operation, def, shown, value) in ops {
        let key = def.name.to_string();
        match *operation {
            op::SET => {
                next.insert(key, value.clone().unwrap_or_default());
            }
            op::DELETE => {
                next.remove(&key);
            }
            op::APPEND | op::SUBTRACT => {
                if def.ty != ConfigType::List {
                    let verb = if *operation == op::APPEND {
                        "APPEND"
                    } else {
                        "SUBTRACT"
                    };
                    return Err(invalid_config(format!(
                        "Can't {verb} to key {shown} because its type is not LIST."
                    )));
                }
                let start = next
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| current_value(def.name));
                let mut items: Vec<String> = start
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                for v in value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if *operation == op::APPEND && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    }
                    if *operation == op::SUBTRACT {
                        items.retain(|i| i != v);
                    }
                }
                next.insert(key, items.join(","));
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
    ops: &[Op],
    incremental: bool,
    validate_only: bool,
) -> AlterResult {
    let Some(info) = shared.storage.topic(name) else {
        return Err((
            c(ResponseError::UnknownTopicOrPartition),
            format!("Topic {name} does not exist."),
        ));
    };
    let mut resolved = Vec::with_capacity(ops.len());
    for (operation, key, value) in ops {
        let def = topic_config(key)
            .ok_or_else(|| invalid_config(format!("Unknown topic config name: {key}")))?;
        resolved.push((*operation, def, key.clone(), value.clone()));
    }
    // The legacy AlterConfigs replaces the whole set of overrides.
    let base = if incremental {
        info.overrides.clone()
    } else {
        BTreeMap::new()
    };
    let next = apply_ops(&base, &resolved, |k| info.config.get(k).unwrap_or_default())?;
    shared
        .storage
        .defaults()
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

fn alter_broker(
    shared: &Shared,
    name: &str,
    ops: &[Op],
    incremental: bool,
    validate_only: bool,
) -> AlterResult {
    let cluster = broker_scope(shared, name)?;
    // As Kafka: the first broker synonym of a topic config is dynamic (`log.retention.ms`);
    // the others (`log.retention.hours`) and the broker's own settings need a restart. Unlike
    // Kafka, which stores names it does not know, Weir refuses them: a typo should not pass.
    let invalid_request = |m: String| (c(ResponseError::InvalidRequest), m);
    let mut resolved = Vec::with_capacity(ops.len());
    for (operation, key, value) in ops {
        let def = match topic_config_for_broker_key(key) {
            Some(def) if def.synonyms.first() == Some(&key.as_str()) => def,
            Some(_) => {
                return Err(invalid_request(format!(
                    "Cannot update these configs dynamically: Set({key})"
                )));
            }
            None if read_only_broker_entries(shared)
                .iter()
                .any(|(k, ..)| k == key) =>
            {
                return Err(invalid_request(format!(
                    "Cannot update these configs dynamically: Set({key})"
                )));
            }
            None => return Err(invalid_request(format!("Unknown broker config: {key}"))),
        };
        resolved.push((*operation, def, key.clone(), value.clone()));
    }
    let mut all = shared.storage.broker_overrides();
    let defaults = shared.storage.defaults();
    let layer = if cluster {
        &mut all.cluster
    } else {
        &mut all.node
    };
    let base = if incremental {
        layer.clone()
    } else {
        BTreeMap::new()
    };
    let next = apply_ops(&base, &resolved, |k| defaults.get(k).unwrap_or_default())?;
    // Check each value under the broker name it was given.
    for (_, def, shown, _) in &resolved {
        if let Some(v) = next.get(def.name) {
            TopicConfig::default()
                .set(def.name, v)
                .map_err(|e| invalid_request(e.to_string().replace(def.name, shown)))?;
        }
    }
    *layer = next;
    if !validate_only {
        shared
            .storage
            .alter_broker_overrides(all)
            .map_err(|e| (code(&e), e.to_string()))?;
        tracing::info!(resource = %if cluster { "<cluster default>" } else { name }, "broker configs altered");
    }
    Ok(())
}

/// One AlterConfigs or IncrementalAlterConfigs resource.
fn alter_resource(
    shared: &Shared,
    resource_type: i8,
    name: &str,
    ops: &[Op],
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let outcome = match resource_type {
        RESOURCE_TOPIC => alter_topic(shared, name, ops, incremental, validate_only),
        RESOURCE_BROKER => alter_broker(shared, name, ops, incremental, validate_only),
        other => Err((
            c(ResponseError::InvalidRequest),
            format!("resource type {other} cannot be altered"),
        )),
    };
    match outcome {
        Ok(()) => (NONE, None),
        Err((e, m)) => {
            tracing::debug!(resource = name, error = %m, "config change refused");
            (e, Some(s(m)))
        }
    }
}

pub(crate) fn alter_configs(
    shared: &Shared,
    req: AlterConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<bytes::Bytes, String> {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        // The legacy API only sets keys (and replaces the whole set).
        let ops: Vec<Op> = res
            .configs
            .iter()
            .map(|c| {
                (
                    op::SET,
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
    shared: &Shared,
    req: IncrementalAlterConfigsRequest,
    version: i16,
    corr: i32,
) -> Result<bytes::Bytes, String> {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        let ops: Vec<Op> = res
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
