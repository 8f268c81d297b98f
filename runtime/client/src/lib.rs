//! `weir-client`: a small async client for the Kafka wire protocol.
//!
//! It connects to one broker, negotiates versions with ApiVersions, and sends typed requests
//! from `kafka-protocol` ([`Client::send`]). On top of that sit the few operations the `weir`
//! CLI needs: topic admin, produce and fetch. It speaks to any Kafka-compatible broker, Weir's
//! own included; it does not yet follow partition leaders across a multi-broker cluster.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

mod groups;
pub use groups::{GroupInfo, GroupMember, MemberInfo, decode_assignment, encode_subscription};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker does not support {0:?} in a version this client speaks")]
    Unsupported(ApiKey),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{what}: {message} (Kafka error {code})")]
    Broker {
        what: String,
        code: i16,
        message: String,
    },
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: i32,
    },
}

fn broker_err(what: impl Into<String>, code: i16, message: Option<&StrBytes>) -> ClientError {
    let message = message
        .map(|m| m.to_string())
        .filter(|m| !m.is_empty())
        .or_else(|| ResponseError::try_from_code(code).map(|e| e.to_string()))
        .unwrap_or_else(|| "unknown error".into());
    ClientError::Broker {
        what: what.into(),
        code,
        message,
    }
}

fn check(
    what: impl Into<String>,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(broker_err(what, code, message))
    }
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    next_correlation: i32,
}

/// A connection to one broker.
#[derive(Debug)]
pub struct Client {
    conn: Mutex<Conn>,
    versions: HashMap<i16, (i16, i16)>,
    client_id: StrBytes,
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

/// A topic as Metadata describes it.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: String,
    pub partitions: i32,
    pub id: String,
}

impl Client {
    /// Connects and negotiates API versions. `addr` is `host:port`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.into(),
                reason: format!("timed out after {timeout:?}"),
            })?
            .map_err(|e| ClientError::Connect {
                addr: addr.into(),
                reason: e.to_string(),
            })?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            conn: Mutex::new(Conn {
                stream,
                next_correlation: 1,
            }),
            versions: HashMap::new(),
            client_id: StrBytes::from_static_str("weir-cli"),
        };
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("weir");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let resp: ApiVersionsResponse = tokio::time::timeout(timeout, client.send_version(req, 3))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.into(),
                reason: "no answer to ApiVersions".into(),
            })??;
        check("ApiVersions", resp.error_code, None)?;
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// The version this client would use for `R` with this broker.
    pub fn version_for<R: Request>(&self) -> Result<i16, ClientError> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol(format!("bad key {}", R::KEY)))?;
        let (lo, hi) = *self
            .versions
            .get(&R::KEY)
            .ok_or(ClientError::Unsupported(key))?;
        let v = hi.min(R::VERSIONS.max);
        if v < lo.max(R::VERSIONS.min) {
            return Err(ClientError::Unsupported(key));
        }
        Ok(v)
    }

    /// Sends a request at the highest version both sides support and waits for its response.
    pub async fn send<R: Request>(&self, req: R) -> Result<R::Response, ClientError> {
        let v = self.version_for::<R>()?;
        self.send_version(req, v).await
    }

    async fn send_version<R: Request>(
        &self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol(format!("bad key {}", R::KEY)))?;
        let mut conn = self.conn.lock().await;
        let correlation = conn.next_correlation;
        conn.next_correlation = conn.next_correlation.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation;
        header.client_id = Some(self.client_id.clone());
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0u8; 4]);
        let proto = |e: anyhow_like::E| ClientError::Protocol(e.0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| proto(e.into()))?;
        req.encode(&mut buf, version).map_err(|e| proto(e.into()))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        conn.stream.write_all(&buf).await?;
        let mut len = [0u8; 4];
        conn.stream.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        if !(4..=1 << 30).contains(&len) {
            return Err(ClientError::Protocol(format!(
                "response size {len} is not plausible"
            )));
        }
        let mut body = BytesMut::zeroed(len as usize);
        conn.stream.read_exact(&mut body).await?;
        let mut body = body.freeze();
        let rh = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| proto(e.into()))?;
        if rh.correlation_id != correlation {
            return Err(ClientError::Protocol(format!(
                "correlation id {} does not match {correlation}",
                rh.correlation_id
            )));
        }
        R::Response::decode(&mut body, version).map_err(|e| proto(e.into()))
    }

    /// Topics and partition counts; `None` lists all topics.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<Vec<TopicMeta>, ClientError> {
        let mut req = MetadataRequest::default();
        req.allow_auto_topic_creation = false;
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut m = metadata_request::MetadataRequestTopic::default();
                    m.name = Some(TopicName(StrBytes::from_string(t.clone())));
                    m
                })
                .collect()
        });
        let resp = self.send(req).await?;
        let mut out = Vec::new();
        for t in resp.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(ClientError::UnknownTopic(name));
            }
            check(format!("metadata for {name}"), t.error_code, None)?;
            out.push(TopicMeta {
                name,
                partitions: t.partitions.len() as i32,
                id: t.topic_id.to_string(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Partition count of one topic.
    pub async fn partitions(&self, topic: &str) -> Result<i32, ClientError> {
        let t = self.metadata(Some(&[topic.to_string()])).await?;
        Ok(t.first().map(|t| t.partitions).unwrap_or(0))
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName(StrBytes::from_string(name.into()));
        t.num_partitions = partitions;
        t.replication_factor = -1;
        t.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = create_topics_request::CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.clone());
                c.value = Some(StrBytes::from_string(v.clone()));
                c
            })
            .collect();
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 30_000;
        let resp = self.send(req).await?;
        for r in resp.topics {
            check(
                format!("create topic {name}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let mut req = DeleteTopicsRequest::default();
        if self.version_for::<DeleteTopicsRequest>()? >= 6 {
            let mut st = delete_topics_request::DeleteTopicState::default();
            st.name = Some(TopicName(StrBytes::from_string(name.into())));
            req.topics = vec![st];
        } else {
            req.topic_names = vec![TopicName(StrBytes::from_string(name.into()))];
        }
        req.timeout_ms = 30_000;
        let resp = self.send(req).await?;
        for r in resp.responses {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(ClientError::UnknownTopic(name.into()));
            }
            check(
                format!("delete topic {name}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Topic configuration as (key, value, is an override).
    pub async fn describe_topic_configs(
        &self,
        name: &str,
    ) -> Result<Vec<(String, String, bool)>, ClientError> {
        let mut res = describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_string(name.into());
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res];
        let resp = self.send(req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(ClientError::UnknownTopic(name.into()));
            }
            check(
                format!("describe configs of {name}"),
                r.error_code,
                r.error_message.as_ref(),
            )?;
            for c in r.configs {
                out.push((
                    c.name.to_string(),
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                    c.config_source == 1,
                ));
            }
        }
        Ok(out)
    }

    /// The offset for `timestamp` (-1 latest, -2 earliest, else the first record at or after it;
    /// `None` if there is none).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>, ClientError> {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = timestamp;
        p.current_leader_epoch = -1;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.into()));
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        let resp = self.send(req).await?;
        let p = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| ClientError::Protocol("empty ListOffsets response".into()))?;
        check(
            format!("list offsets of {topic}-{partition}"),
            p.error_code,
            None,
        )?;
        Ok(if p.offset < 0 { None } else { Some(p.offset) })
    }

    /// Produces one batch to one partition with acks=all; returns its base offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[NewRecord],
        compression: Compression,
    ) -> Result<i64, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1 + i as i32,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(buf.freeze());
        let mut td = produce_request::TopicProduceData::default();
        td.name = TopicName(StrBytes::from_string(topic.into()));
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 30_000;
        req.topic_data = vec![td];
        let resp = self.send(req).await?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .next()
            .ok_or_else(|| ClientError::Protocol("empty Produce response".into()))?;
        if p.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(ClientError::UnknownTopic(format!(
                "{topic} (partition {partition})"
            )));
        }
        check(
            format!("produce to {topic}-{partition}"),
            p.error_code,
            p.error_message.as_ref(),
        )?;
        Ok(p.base_offset)
    }

    /// Fetches records of one partition from `offset`, waiting up to `max_wait` for data.
    /// Returns the records at or after `offset` and the high watermark.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<(Vec<Record>, i64), ClientError> {
        let mut p = fetch_request::FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = 1 << 20;
        p.current_leader_epoch = -1;
        p.log_start_offset = -1;
        let mut t = fetch_request::FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(topic.into()));
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = max_wait.as_millis() as i32;
        req.min_bytes = 1;
        req.max_bytes = 16 << 20;
        req.session_epoch = -1;
        req.topics = vec![t];
        let resp = self.send(req).await?;
        check("fetch", resp.error_code, None)?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| ClientError::Protocol("empty Fetch response".into()))?;
        check(
            format!("fetch {topic}-{partition} at offset {offset}"),
            p.error_code,
            None,
        )?;
        let mut records = Vec::new();
        if let Some(mut bytes) = p.records {
            while !bytes.is_empty() {
                let set = RecordBatchDecoder::decode(&mut bytes)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                records.extend(
                    set.records
                        .into_iter()
                        .filter(|r| r.offset >= offset && !r.control),
                );
            }
        }
        Ok((records, p.high_watermark))
    }
}

/// Kafka's default partitioner for keyed records (murmur2, as the Java client and librdkafka's
/// `murmur2_random` do), so the CLI places keys where other clients would.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

mod anyhow_like {
    /// Carries an error message from `kafka-protocol` (whose errors are `anyhow::Error`).
    pub struct E(pub String);
    impl<T: std::fmt::Display> From<T> for E {
        fn from(e: T) -> Self {
            E(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Reference values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }
}
