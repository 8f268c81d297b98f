//! Mapping storage errors to Kafka error codes.

use kafka_protocol::ResponseError;
use weir_log::{LogError, RejectKind};

pub fn code(e: &LogError) -> i16 {
    let r = match e {
        LogError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        LogError::InvalidConfig { .. } | LogError::UnknownConfig(_) => ResponseError::InvalidConfig,
        LogError::RecordsRejected {
            kind: RejectKind::InvalidRecord,
            ..
        } => ResponseError::InvalidRecord,
        LogError::RecordsRejected {
            kind: RejectKind::InvalidTimestamp,
            ..
        } => ResponseError::InvalidTimestamp,
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord,
        LogError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        LogError::Corrupt(_) | LogError::Io(_) => ResponseError::KafkaStorageError,
    };
    r.code()
}

pub const NONE: i16 = 0;
pub fn c(e: ResponseError) -> i16 {
    e.code()
}
