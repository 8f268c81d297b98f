//! Source partitions and offsets in Kafka's FileStreamSource format, so offsets move between
//! Kafka Connect and Weir: the partition is `{"filename":"<path>"}` and the offset
//! `{"position":<byte offset just past the line>}`, reading resumes at that byte.

use serde_json::{Value, json};

/// The source partition of the file at `path` (the path as the config gives it).
pub fn partition(path: &str) -> Vec<u8> {
    json!({ "filename": path }).to_string().into_bytes()
}

/// The source offset of a record whose line ends just before byte `position`.
pub fn offset(position: u64) -> Vec<u8> {
    json!({ "position": position }).to_string().into_bytes()
}

/// A committed (partition, offset) pair as (path, position); `None` when either is not in
/// this format (another connector's offsets, or a hand-edited one).
pub fn parse(partition: &[u8], offset: &[u8]) -> Option<(String, u64)> {
    let p: Value = serde_json::from_slice(partition).ok()?;
    let o: Value = serde_json::from_slice(offset).ok()?;
    Some((
        p.get("filename")?.as_str()?.to_string(),
        o.get("position")?.as_u64()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_format_round_trips() {
        assert_eq!(
            partition("/tmp/test.txt"),
            br#"{"filename":"/tmp/test.txt"}"#
        );
        assert_eq!(offset(42), br#"{"position":42}"#);
        assert_eq!(
            parse(&partition("/a \"b\".txt"), &offset(7)),
            Some(("/a \"b\".txt".to_string(), 7))
        );
        // As Kafka Connect's JsonConverter stores them, with spaces and other fields.
        assert_eq!(
            parse(
                br#"{ "filename" : "/x" }"#,
                br#"{"position": 9, "extra": 1}"#
            ),
            Some(("/x".to_string(), 9))
        );
        assert_eq!(parse(b"counter", b"3"), None);
        assert_eq!(parse(br#"{"filename":"/x"}"#, br#"{"position":-1}"#), None);
    }
}
