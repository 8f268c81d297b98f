//! Authorized operations, as a broker without an authorizer reports them.
//!
//! Weir has no ACLs: every client may do everything. Kafka with no authorizer configured
//! answers `include_*_authorized_operations` with every operation the resource type supports,
//! so that is what Weir reports (Metadata, DescribeCluster, DescribeGroups). Each operation is
//! one bit, numbered by Kafka's `AclOperation` codes.

const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

const fn bits(ops: &[i32]) -> i32 {
    let mut v = 0;
    let mut i = 0;
    while i < ops.len() {
        v |= 1 << ops[i];
        i += 1;
    }
    v
}

/// What a topic supports: read, write, create, delete, alter, describe and both config ops.
pub(crate) const TOPIC_OPERATIONS: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);

/// What a consumer group supports: read, describe, delete.
pub(crate) const GROUP_OPERATIONS: i32 = bits(&[READ, DESCRIBE, DELETE]);

/// What the cluster supports.
pub(crate) const CLUSTER_OPERATIONS: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_match_kafkas() {
        assert_eq!(TOPIC_OPERATIONS, 3576);
        assert_eq!(GROUP_OPERATIONS, 328);
        assert_eq!(CLUSTER_OPERATIONS, 8096);
    }
}
