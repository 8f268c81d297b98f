"""Kafka behaviours that clients rely on, checked against Weir with real
clients (and kafka_wire where a client hides the answer):

  * KIP-74 fetch sizes: a response never exceeds the Fetch's max_bytes,
    except that the first batch of the first partition with data may (so the
    consumer makes progress); later partitions get nothing when their first
    batch does not fit. librdkafka drops a response larger than
    receive.message.max.bytes ("Invalid response size") and retries the same
    fetch forever, so an oversized answer stalls the consumer.
  * Static membership (KIP-345): a second consumer joining with the same
    group.instance.id fences the first, which gets FENCED_INSTANCE_ID (82) as
    a fatal error and stops; the newcomer keeps the partitions and the group
    stays stable. Answering the old member with UNKNOWN_MEMBER_ID instead makes
    it rejoin, and the two displace each other forever.
  * Compacted topics refuse records without a key (INVALID_RECORD, 87) and
    append nothing; a keyed record, or a keyless one on a delete-only topic,
    is fine.
  * Topic configs Kafka documents are accepted at create and by
    IncrementalAlterConfigs and described back with source
    DYNAMIC_TOPIC_CONFIG; unknown keys and bad values are refused with
    INVALID_CONFIG (40) naming the key. The ones with visible behaviour are
    checked end to end: message.timestamp.type=LogAppendTime,
    compression.type (the broker recompresses), message.timestamp.before/
    after.max.ms (INVALID_TIMESTAMP, 32), and an idempotent producer writing
    to a topic the broker recompresses.
  * Broker configs: DescribeConfigs for the broker, dynamic
    log.retention.ms per broker and cluster-wide (sources
    DYNAMIC_BROKER_CONFIG / DYNAMIC_DEFAULT_BROKER_CONFIG, the per-broker
    value winning), applied to topics without an override, kept across a
    restart, and DELETE restoring the previous value; read-only and unknown
    broker configs refused.
  * Authorized operations without an authorizer: every operation the
    resource supports (Kafka's answer when no ACLs are configured).

librdkafka cannot name the cluster-wide default broker resource (its
ConfigResource refuses the empty name, and kafka-python insists on an
integer broker id), so that part uses kafka_wire's raw DescribeConfigs and
IncrementalAlterConfigs.
"""

from __future__ import annotations

import random
import time

import confluent_kafka as ck
import kafka.errors as Errors
import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AclOperation, ConfigSource, ResourceType

from helpers import (
    FAST_GROUPS,
    ck_admin,
    ck_alter_configs,
    ck_consume_partition,
    ck_consumer,
    ck_describe_configs,
    ck_group_consumer,
    ck_produce,
    ck_produce_ok,
    ck_producer,
    ck_watermarks,
    create_topic,
    describe_topic_config,
    kp_consume_partition,
    kp_producer,
    list_topic_names,
    now_ms,
    wait_until,
)
from kafka_wire import OP_DELETE, OP_SET, RESOURCE_BROKER, describe_configs, fetch, fetch_batches, incremental_alter_configs

INVALID_TIMESTAMP = 32
INVALID_CONFIG = 40
INVALID_REQUEST = 42
FENCED_INSTANCE_ID = 82
INVALID_RECORD = 87

HOUR_MS = 3600 * 1000


def source_of(entry) -> str:
    """The ConfigSource name of a confluent-kafka ConfigEntry (its source is an int)."""
    return ConfigSource(entry.source).name


def error_of(exc: ck.KafkaException) -> ck.KafkaError:
    return exc.args[0]


# ---------------------------------------------------------------------------
# KIP-74: fetch sizes
# ---------------------------------------------------------------------------

BIG_VALUE = 900 * 1024  # one record per batch: a batch is a little larger than this
BIG_PARTITIONS = 3
FETCH_MAX = 1_000_000  # two big batches do not fit, one does


def produce_big_batches(bootstrap: str, topic: str) -> dict:
    """Two single-record batches of BIG_VALUE random (incompressible) bytes
    in each of the topic's partitions. Returns {(partition, offset): value}."""
    rng = random.Random(74)
    records = [
        dict(key=b"p%d-%d" % (p, i), value=rng.randbytes(BIG_VALUE), partition=p)
        for p in range(BIG_PARTITIONS)
        for i in range(2)
    ]
    producer = ck_producer(
        bootstrap,
        **{"linger.ms": 0, "batch.size": 1 << 20, "message.max.bytes": 1 << 20, "compression.type": "none"},
    )
    # Flushing after each record makes every batch hold exactly one record.
    deliveries = ck_produce(producer, topic, records, flush_each=True)
    errors = [d.error for d in deliveries if d.error is not None]
    assert not errors, f"producing the big records failed: {errors}"
    return {(d.partition, d.offset): d.value for d in deliveries}


@pytest.mark.timeout(120)
def test_librdkafka_consumer_with_fetch_max_bytes_gets_every_big_batch(broker):
    """fetch.max.bytes=1000000 across three partitions holding two ~900 KiB
    batches each: every response must fit in receive.message.max.bytes
    (fetch.max.bytes + 512, as librdkafka requires), so the consumer gets
    all six records, one batch per response."""
    topic = "kip74-librdkafka"
    create_topic(broker.bootstrap, topic, BIG_PARTITIONS)
    expected = produce_big_batches(broker.bootstrap, topic)
    assert sorted(expected) == [(p, o) for p in range(BIG_PARTITIONS) for o in (0, 1)]

    client_errors: list = []
    consumer = ck_consumer(
        broker.bootstrap,
        **{
            "fetch.max.bytes": FETCH_MAX,
            "message.max.bytes": FETCH_MAX,  # librdkafka: fetch.max.bytes >= message.max.bytes
            "receive.message.max.bytes": FETCH_MAX + 512,  # librdkafka: >= fetch.max.bytes + 512
            "error_cb": client_errors.append,
        },
    )
    got: dict = {}
    try:
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(BIG_PARTITIONS)])
        deadline = time.monotonic() + 30
        while len(got) < len(expected) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10, timeout=0.5):
                err = msg.error()
                if err is None:
                    got[(msg.partition(), msg.offset())] = msg.value()
                elif err.code() != ck.KafkaError._PARTITION_EOF:
                    client_errors.append(err)
    finally:
        consumer.close()
    assert sorted(got) == sorted(expected), (
        f"consumed {sorted(got)} of {sorted(expected)} within 30 s; client errors (last 5): {client_errors[-5:]}"
    )
    assert got == expected, "a big record came back with different bytes"


def check_fetch_limits(parts: list, max_bytes: int, partition_max_bytes: int) -> None:
    """The KIP-74 rules for one raw Fetch response (partitions in response order)."""
    assert all(p.error_code == 0 for p in parts), [(p.partition, p.error_code) for p in parts]
    sizes = [(p.partition, len(p.records)) for p in parts]
    first = parts[0]
    assert first.batches, f"the first partition returned no whole batch, so a consumer cannot progress: {sizes}"
    total = sum(len(p.records) for p in parts)
    for p in parts[1:]:
        assert len(p.records) <= partition_max_bytes, f"partition {p.partition} exceeds its limit: {sizes}"
    if total > max_bytes or len(first.records) > partition_max_bytes:
        # Only the first batch may break a limit, and then it comes alone.
        assert len(first.records) == len(first.batches[0].raw), (
            f"over the limit with more than the first batch: {sizes}, max_bytes {max_bytes}"
        )
        assert all(not p.records for p in parts[1:]), (
            f"the first batch exceeded the limit, yet later partitions got data too: {sizes}, max_bytes {max_bytes}"
        )


@pytest.mark.timeout(120)
def test_raw_fetch_respects_max_bytes_across_partitions(start_broker):
    # The broker's own cap (fetch.max.bytes, 1 MiB by default) raised out of the way: this
    # test is about the client's limits.
    broker = start_broker(env={"WEIR_BROKER__FETCH_MAX_BYTES": str(64 << 20)})
    topic = "kip74-raw"
    create_topic(broker.bootstrap, topic, BIG_PARTITIONS)
    produce_big_batches(broker.bootstrap, topic)
    one_batch = len(fetch_batches("127.0.0.1", broker.port, topic, 0, 1)[2][0].raw)
    assert FETCH_MAX // 2 < one_batch < FETCH_MAX, one_batch

    cases = [
        # (what, [(partition, offset)] in request order, max_bytes, partition_max_bytes, partitions with data)
        ("each partition's last batch", [(0, 1), (1, 1), (2, 1)], FETCH_MAX, 1 << 20, [0]),
        ("from the start", [(0, 0), (1, 0), (2, 0)], FETCH_MAX, 1 << 20, [0]),
        ("first batch above max_bytes", [(0, 0), (1, 0), (2, 0)], FETCH_MAX // 2, 1 << 20, [0]),
        ("another request order", [(2, 1), (1, 0), (0, 0)], FETCH_MAX, 1 << 20, [2]),
        ("first batch above the partition limit", [(0, 1), (1, 1), (2, 1)], 32 << 20, 100_000, [0]),
        ("room for two partitions", [(0, 1), (1, 1), (2, 1)], 2 * one_batch + 100, 1 << 20, [0, 1]),
    ]
    for what, positions, max_bytes, partition_max, with_data in cases:
        parts = fetch("127.0.0.1", broker.port, [(topic, p, o) for p, o in positions],
                      max_bytes=max_bytes, partition_max_bytes=partition_max)  # fmt: skip
        sizes = [(p.partition, len(p.records)) for p in parts]
        print(f"{what}: max_bytes {max_bytes}, partition max {partition_max}: record bytes per partition {sizes}")
        assert [p.partition for p in parts] == [p for p, _ in positions], f"{what}: partitions answered {sizes}"
        check_fetch_limits(parts, max_bytes, partition_max)
        assert [p.partition for p in parts if p.records] == with_data, f"{what}: record bytes per partition {sizes}"


@pytest.mark.timeout(120)
def test_broker_fetch_max_bytes_caps_every_response(start_broker):
    """The broker's own fetch.max.bytes (Weir's default 1 MiB, Kafka's 55 MiB)
    caps a response whatever the client asks for, with the same KIP-74 rule:
    only the first batch may exceed it. Raised in the broker's config, the
    same fetch gets every partition."""
    positions = [(0, 0), (1, 0), (2, 0)]
    for env, cap, with_data in [({}, 1 << 20, [0]), ({"WEIR_BROKER__FETCH_MAX_BYTES": str(64 << 20)}, 64 << 20, [0, 1, 2])]:
        b = start_broker(env=env, name=f"cap{cap}")
        assert broker_entry(b.bootstrap, "fetch.max.bytes")[0] == str(cap)
        topic = "fetch-cap"
        create_topic(b.bootstrap, topic, BIG_PARTITIONS)
        produce_big_batches(b.bootstrap, topic)
        parts = fetch("127.0.0.1", b.port, [(topic, p, o) for p, o in positions],
                      max_bytes=64 << 20, partition_max_bytes=1 << 20)  # fmt: skip
        sizes = [(p.partition, len(p.records)) for p in parts]
        check_fetch_limits(parts, min(cap, 64 << 20), 1 << 20)
        assert [p.partition for p in parts if p.records] == with_data, f"cap {cap}: record bytes per partition {sizes}"
        b.stop()


# ---------------------------------------------------------------------------
# Static membership: fencing
# ---------------------------------------------------------------------------


class GroupMember:
    """A subscribed librdkafka consumer that the test polls; records what it
    owns, its rebalance events, the values it consumed and every error it
    saw (error_cb, error events from poll, exceptions raised by poll)."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, **config):
        self.name = name
        self.errors: list = []
        self.owned: set = set()
        self.revocations = 0
        self.events: list = []
        self.values: list = []
        self.consumer = ck_group_consumer(bootstrap, group, **{"client.id": name, "error_cb": self.errors.append, **config})
        self.consumer.subscribe([topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost)
        self.closed = False

    def _assign(self, consumer, partitions):
        self.owned = {tp.partition for tp in partitions}  # eager assignor: the whole new assignment
        self.events.append(("assign", sorted(self.owned)))

    def _revoke(self, consumer, partitions):
        self.revocations += 1
        self.owned -= {tp.partition for tp in partitions}
        self.events.append(("revoke", sorted(tp.partition for tp in partitions)))

    def _lost(self, consumer, partitions):
        self.revocations += 1
        self.owned -= {tp.partition for tp in partitions}
        self.events.append(("lost", sorted(tp.partition for tp in partitions)))

    def poll(self, timeout: float = 0.05) -> None:
        if self.closed:
            return
        try:
            msg = self.consumer.poll(timeout)
        except ck.KafkaException as exc:
            self.errors.append(error_of(exc))
            return
        if msg is None:
            return
        if msg.error() is not None:
            self.errors.append(msg.error())
        else:
            self.values.append(msg.value())

    def fenced(self) -> bool:
        """A fatal FENCED_INSTANCE_ID error reached the application.

        librdkafka turns the broker's FENCED_INSTANCE_ID into a fatal error.
        For a subscribed consumer it is delivered as an error event from
        poll() with code _FATAL (confluent-kafka's KafkaError.fatal() is False
        on such an event; the message names the underlying error); the Python
        wrapper raises KafkaException(code 82, fatal) when the fatal error
        comes through the error callback path instead. Accept either."""
        for err in self.errors:
            if err.code() == FENCED_INSTANCE_ID and err.fatal():
                return True
            if err.code() == ck.KafkaError._FATAL and "fenced" in err.str().lower():
                return True
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


def describe_group(bootstrap: str, group: str):
    admin = ck_admin(bootstrap)
    return admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)


@pytest.mark.timeout(120)
def test_static_member_is_fenced_by_a_newer_instance(start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = "fencing", "fencing-group"
    create_topic(broker.bootstrap, topic, 2)
    static = {"group.instance.id": "static-1", "session.timeout.ms": 6000, "partition.assignment.strategy": "range"}

    first = GroupMember("A", broker.bootstrap, group, topic, **static)
    second = None
    members = [first]

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for m in members:
                m.poll(0.02)

    def until(probe, timeout: float, what: str):
        def step():
            pump(0.2)
            return probe()

        return wait_until(step, timeout=timeout, interval=0, what=what)

    try:
        until(lambda: first.owned == {0, 1}, 30, "A to own both partitions")
        pump(1.0)  # a few heartbeats in the stable group
        assert not first.fenced(), f"A fenced before anybody else joined: {first.errors}"

        second = GroupMember("B", broker.bootstrap, group, topic, **static)
        members.append(second)

        def taken_over() -> bool:
            assert first.fenced(), f"A not fenced yet; A's errors {first.errors}, events {first.events}"
            assert second.owned == {0, 1}, f"B owns {second.owned}; B's events {second.events}, A's {first.events}"
            return True

        until(taken_over, 20, "A to be fenced (fatal FENCED_INSTANCE_ID) and B to own both partitions")
        print(f"A's errors: {[(e.code(), e.str(), e.fatal()) for e in first.errors]}")
        print(f"A's events: {first.events}; B's events: {second.events}")

        desc = describe_group(broker.bootstrap, group)
        assert len(desc.members) == 1, f"members after the fencing: {desc.members}"
        (member,) = desc.members
        assert member.client_id == "B" and member.group_instance_id == "static-1", member
        b_member_id = member.member_id
        b_revocations = second.revocations

        # Over the next 10 s nothing moves: A stays out, B keeps both
        # partitions under the same member id, without a rebalance.
        end = time.monotonic() + 10
        while time.monotonic() < end:
            pump(1.0)
            desc = describe_group(broker.bootstrap, group)
            ids = [(m.client_id, m.member_id) for m in desc.members]
            assert ids == [("B", b_member_id)], f"group members changed after the fencing: {ids}; A events {first.events}"
            assert second.revocations == b_revocations and second.owned == {0, 1}, (
                f"B lost partitions after the fencing: {second.events}"
            )
        assert str(desc.state).endswith("STABLE"), desc.state

        # B really consumes both partitions.
        ck_produce_ok(broker.bootstrap, topic, [dict(value=b"%d" % i, partition=i % 2) for i in range(20)])
        until(lambda: sorted(int(v) for v in second.values) == list(range(20)), 20, "B to consume every record")
        assert not first.values, f"the fenced member consumed {first.values}"
    finally:
        for m in members:
            m.close()


# ---------------------------------------------------------------------------
# Compacted topics need keys
# ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_keyless_record_refused_on_compacted_topic(broker, policy):
    topic, plain = f"keyless-{policy.replace(',', '-')}", f"keyless-delete-{policy.replace(',', '-')}"
    create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": policy})
    create_topic(broker.bootstrap, plain, 1, {"cleanup.policy": "delete"})
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 0, "message.timeout.ms": 15000})

    (keyless,) = ck_produce(producer, topic, [dict(value=b"no key", partition=0)])
    assert keyless.error is not None, f"a keyless record was appended to a {policy} topic at offset {keyless.offset}"
    assert keyless.error.code() == INVALID_RECORD, f"expected INVALID_RECORD (87), got {keyless.error}"
    assert ck_watermarks(broker.bootstrap, topic, 0) == (0, 0), "the refused record moved the high watermark"

    (keyed,) = ck_produce(producer, topic, [dict(key=b"k", value=b"with key", partition=0)])
    assert keyed.error is None and keyed.offset == 0, keyed

    # kafka-python gets the same refusal.
    kp = kp_producer(broker.bootstrap, linger_ms=0, retries=0)
    try:
        with pytest.raises(Errors.InvalidRecordError):
            kp.send(topic, value=b"no key either", partition=0).get(timeout=20)
    finally:
        kp.close(timeout=10)
    assert ck_watermarks(broker.bootstrap, topic, 0) == (0, 1)
    assert [(r.key, r.value) for r in ck_consume_partition(broker.bootstrap, topic, 0)] == [(b"k", b"with key")]

    # On a topic that is not compacted, a keyless record is fine.
    (plain_keyless,) = ck_produce(producer, plain, [dict(value=b"no key", partition=0)])
    assert plain_keyless.error is None and plain_keyless.offset == 0, plain_keyless


# ---------------------------------------------------------------------------
# Topic configs
# ---------------------------------------------------------------------------

# Documented topic configs and a non-default value for each.
DOCUMENTED_CONFIGS = {
    "compression.type": "zstd",
    "compression.gzip.level": "5",
    "compression.lz4.level": "10",
    "compression.zstd.level": "7",
    "min.insync.replicas": "2",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.1",
    "max.compaction.lag.ms": "86400000",
    "file.delete.delay.ms": "30000",
    "message.timestamp.difference.max.ms": "86400000",
    "message.timestamp.before.max.ms": "86400000",
    "message.timestamp.after.max.ms": "3600000",
    "unclean.leader.election.enable": "true",
    "flush.messages": "10000",
    "flush.ms": "60000",
    "preallocate": "true",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "1000",
    "message.format.version": "2.8",
    "message.downconversion.enable": "false",
    "leader.replication.throttled.replicas": "0:0",
    "follower.replication.throttled.replicas": "*",
    "local.retention.ms": "3600000",
    "local.retention.bytes": "1048576",
    "remote.storage.enable": "false",
}

# Other valid values, for IncrementalAlterConfigs.
ALTERED_CONFIGS = {
    "compression.type": "lz4",
    "compression.gzip.level": "9",
    "compression.lz4.level": "17",
    "compression.zstd.level": "1",
    "min.insync.replicas": "1",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.9",
    "max.compaction.lag.ms": "3600000",
    "file.delete.delay.ms": "1000",
    "message.timestamp.difference.max.ms": "3600000",
    "message.timestamp.before.max.ms": "7200000",
    "message.timestamp.after.max.ms": "7200000",
    "unclean.leader.election.enable": "false",
    "flush.messages": "1",
    "flush.ms": "1000",
    "preallocate": "false",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "0",
    "message.format.version": "3.0",
    "message.downconversion.enable": "true",
    "leader.replication.throttled.replicas": "*",
    "follower.replication.throttled.replicas": "0:0",
    "local.retention.ms": "-2",
    "local.retention.bytes": "-2",
    "remote.storage.enable": "false",
}

# Kafka's documented defaults for some of them (what DELETE goes back to).
KAFKA_DEFAULTS = {
    "compression.type": "producer",
    "min.insync.replicas": "1",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "unclean.leader.election.enable": "false",
    "preallocate": "false",
    "segment.jitter.ms": "0",
    "local.retention.ms": "-2",
    "local.retention.bytes": "-2",
    "remote.storage.enable": "false",
}

COMPRESSION_TYPES = ["producer", "gzip", "snappy", "lz4", "zstd", "uncompressed"]


def assert_topic_configs(bootstrap: str, topic: str, expected: dict, source: str = "DYNAMIC_TOPIC_CONFIG") -> dict:
    entries = ck_describe_configs(bootstrap, ResourceType.TOPIC, topic)
    missing = sorted(set(expected) - set(entries))
    assert not missing, f"{topic}: DescribeConfigs does not list {missing}"
    have = {k: (entries[k].value, source_of(entries[k])) for k in expected}
    wrong = {k: v for k, v in have.items() if v != (expected[k], source)}
    assert not wrong, f"{topic}: expected {source} with {({k: expected[k] for k in wrong})}, described {wrong}"
    return entries


@pytest.mark.timeout(90)
def test_documented_topic_configs_accepted_and_described(broker):
    create_topic(broker.bootstrap, "cfg-documented", 1, DOCUMENTED_CONFIGS)
    assert_topic_configs(broker.bootstrap, "cfg-documented", DOCUMENTED_CONFIGS)

    for codec in COMPRESSION_TYPES:
        create_topic(broker.bootstrap, f"cfg-codec-{codec}", 1, {"compression.type": codec})
        assert_topic_configs(broker.bootstrap, f"cfg-codec-{codec}", {"compression.type": codec})

    # IncrementalAlterConfigs: SET every one on a topic created without them...
    create_topic(broker.bootstrap, "cfg-altered", 1)
    ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-altered", DOCUMENTED_CONFIGS)
    assert_topic_configs(broker.bootstrap, "cfg-altered", DOCUMENTED_CONFIGS)
    ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-altered", ALTERED_CONFIGS)
    assert_topic_configs(broker.bootstrap, "cfg-altered", ALTERED_CONFIGS)
    for codec in COMPRESSION_TYPES:
        ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-altered", {"compression.type": codec})
        assert_topic_configs(broker.bootstrap, "cfg-altered", {"compression.type": codec})

    # ... and DELETE puts them back to their defaults.
    ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-altered", {k: None for k in DOCUMENTED_CONFIGS})
    entries = ck_describe_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-altered")
    still = sorted(k for k, e in entries.items() if source_of(e) == "DYNAMIC_TOPIC_CONFIG")
    assert not still, f"configs still set on the topic after DELETE: {still}"
    missing = sorted(set(DOCUMENTED_CONFIGS) - set(entries))
    assert not missing, f"DescribeConfigs does not list {missing} for a topic without overrides"
    defaults = {k: entries[k].value for k in KAFKA_DEFAULTS}
    assert defaults == KAFKA_DEFAULTS, f"defaults differ from Kafka's: {defaults}"


@pytest.mark.timeout(90)
def test_topic_config_refusals_name_the_key(broker):
    """Unknown keys and bad values are refused with INVALID_CONFIG naming the
    key, at create and at alter; a valid value of the same key is accepted
    (so the refusal is about the value, not about an unknown key)."""
    cases = [
        # (key, bad value, good value or None for an unknown key)
        ("retention.mss", "1", None),
        ("min.insync.replicas", "0", "1"),
        ("compression.type", "brotli", "gzip"),
        ("min.cleanable.dirty.ratio", "1.5", "0.9"),
        ("remote.storage.enable", "true", "false"),  # no tiered storage
    ]
    create_topic(broker.bootstrap, "cfg-refusals", 1)
    applied: dict = {}  # what the good alters set on cfg-refusals

    def overrides() -> dict:
        entries = ck_describe_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-refusals")
        return {k: e.value for k, e in entries.items() if source_of(e) == "DYNAMIC_TOPIC_CONFIG"}

    for i, (key, bad, good) in enumerate(cases):
        with pytest.raises(ck.KafkaException) as refused:
            create_topic(broker.bootstrap, f"cfg-bad-{i}", 1, {key: bad})
        err = error_of(refused.value)
        print(f"create with {key}={bad}: {err.code()} {err.str()}")
        assert err.code() == INVALID_CONFIG and key in err.str(), f"create with {key}={bad}: {err}"

        with pytest.raises(ck.KafkaException) as refused:
            ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-refusals", {key: bad})
        err = error_of(refused.value)
        assert err.code() == INVALID_CONFIG and key in err.str(), f"alter with {key}={bad}: {err}"
        assert overrides() == applied, f"the refused alter {key}={bad} changed the topic"

        if good is not None:
            create_topic(broker.bootstrap, f"cfg-good-{i}", 1, {key: good})
            assert_topic_configs(broker.bootstrap, f"cfg-good-{i}", {key: good})
            ck_alter_configs(broker.bootstrap, ResourceType.TOPIC, "cfg-refusals", {key: good})
            applied[key] = good
            assert overrides() == applied
    refused_topics = {t for t in list_topic_names(broker.bootstrap) if t.startswith("cfg-bad-")}
    assert not refused_topics, f"refused topics exist: {refused_topics}"


@pytest.mark.timeout(60)
def test_log_append_time_replaces_the_producer_timestamp(broker):
    topic = "log-append-time"
    create_topic(broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    hour_ago = now_ms() - HOUR_MS
    before = now_ms()
    ck_produce_ok(broker.bootstrap, topic, [dict(key=b"k", value=b"stamped by the broker", timestamp=hour_ago, partition=0)])
    after = now_ms()

    for client, read in (("confluent-kafka", ck_consume_partition), ("kafka-python", kp_consume_partition)):
        (record,) = read(broker.bootstrap, topic, 0)
        assert record.log_append_time and not record.create_time, f"{client}: timestamp type is not LogAppendTime: {record}"
        assert before - 2000 <= record.timestamp <= after + 2000, (
            f"{client}: timestamp {record.timestamp} is not the append time (produced {before}..{after}, "
            f"record said {hour_ago})"
        )
    _, _, (batch,) = fetch_batches("127.0.0.1", broker.port, topic, 0)
    assert batch.log_append_time, f"the stored batch lacks the LogAppendTime attribute: {batch.attributes:#x}"
    assert before - 2000 <= batch.max_timestamp <= after + 2000, batch.max_timestamp


def varied_records(count: int, seed: int) -> list:
    """produce() kwargs for partition 0: keys or none, values (null, empty,
    text, binary), headers or none, explicit CreateTime timestamps."""
    rng = random.Random(seed)
    base = now_ms() - 10 * 60 * 1000
    records = []
    for i in range(count):
        key = None if i % 7 == 0 else b"key-%d" % (i % 40)
        if i % 11 == 0:
            value = None
        elif i % 13 == 0:
            value = b""
        elif i % 5 == 0:
            value = rng.randbytes(rng.randrange(1, 200))
        else:
            value = b"record %05d " % i + b"lorem ipsum dolor " * rng.randrange(1, 20)
        headers = [("trace", b"t-%d" % i), ("empty", b"")] if i % 3 == 0 else None
        records.append(dict(key=key, value=value, headers=headers, timestamp=base + i * 7 + rng.randrange(3), partition=0))
    return records


def check_records_exact(bootstrap: str, topic: str, sent: list) -> None:
    """Both clients read back exactly `sent` (keys, values, headers, CreateTime timestamps), in order."""
    want = [(r["key"], r["value"], tuple(r["headers"] or ()), r["timestamp"], True) for r in sent]
    for client, read in (("confluent-kafka", ck_consume_partition), ("kafka-python", kp_consume_partition)):
        got = read(bootstrap, topic, 0)
        assert [r.offset for r in got] == list(range(len(sent))), f"{client}: offsets are not 0..{len(sent) - 1}"
        have = [(r.key, r.value, tuple(r.headers), r.timestamp, r.create_time) for r in got]
        diff = [(i, w, h) for i, (w, h) in enumerate(zip(want, have)) if w != h]
        assert not diff, f"{client} read {len(diff)} records differently, e.g. (offset, sent, read) {diff[:2]}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "topic_codec,producer_codec,stored",
    [("gzip", "none", "gzip"), ("uncompressed", "lz4", "none"), ("producer", "snappy", "snappy"), ("zstd", "gzip", "zstd")],
)
def test_topic_compression_type_recompresses(broker, topic_codec, producer_codec, stored):
    topic = f"codec-{topic_codec}-from-{producer_codec}"
    create_topic(broker.bootstrap, topic, 1, {"compression.type": topic_codec})
    sent = varied_records(500, seed=len(topic))
    ck_produce_ok(broker.bootstrap, topic, sent, **{"compression.type": producer_codec, "linger.ms": 50})

    error, high, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    assert error == 0 and high == len(sent)
    assert sum(b.record_count for b in batches) == len(sent)
    codecs = sorted({b.codec for b in batches})
    assert codecs == [stored], f"compression.type={topic_codec}, producer {producer_codec}: batches stored as {codecs}"
    check_records_exact(broker.bootstrap, topic, sent)


@pytest.mark.timeout(90)
def test_timestamp_before_and_after_limits(broker):
    past, future = "ts-before-limit", "ts-after-limit"
    create_topic(broker.bootstrap, past, 1, {"message.timestamp.before.max.ms": str(HOUR_MS)})
    create_topic(broker.bootstrap, future, 1, {"message.timestamp.after.max.ms": str(HOUR_MS)})
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 0, "message.timeout.ms": 15000})
    now = now_ms()

    (old,) = ck_produce(producer, past, [dict(value=b"two hours ago", timestamp=now - 2 * HOUR_MS, partition=0)])
    assert old.error is not None and old.error.code() == INVALID_TIMESTAMP, f"a record 2 h old: {old.error} {old.offset}"
    (ahead,) = ck_produce(producer, future, [dict(value=b"in two hours", timestamp=now + 2 * HOUR_MS, partition=0)])
    assert ahead.error is not None and ahead.error.code() == INVALID_TIMESTAMP, f"a record 2 h ahead: {ahead.error}"
    assert ck_watermarks(broker.bootstrap, past, 0)[1] == 0 and ck_watermarks(broker.bootstrap, future, 0)[1] == 0

    kp = kp_producer(broker.bootstrap, linger_ms=0, retries=0)
    try:
        with pytest.raises(Errors.InvalidTimestampError):
            kp.send(past, value=b"old", partition=0, timestamp_ms=now - 2 * HOUR_MS).get(timeout=20)
        with pytest.raises(Errors.InvalidTimestampError):
            kp.send(future, value=b"ahead", partition=0, timestamp_ms=now + 2 * HOUR_MS).get(timeout=20)
    finally:
        kp.close(timeout=10)

    # Within the limits: accepted. (after.max.ms says nothing about the past.)
    ck_produce_ok(broker.bootstrap, past, [dict(value=b"now", partition=0)])
    ck_produce_ok(
        broker.bootstrap,
        future,
        [dict(value=b"now", partition=0), dict(value=b"two hours ago", timestamp=now - 2 * HOUR_MS, partition=0)],
    )
    assert [r.value for r in ck_consume_partition(broker.bootstrap, past, 0)] == [b"now"]
    assert [r.value for r in ck_consume_partition(broker.bootstrap, future, 0)] == [b"now", b"two hours ago"]


@pytest.mark.timeout(90)
def test_idempotent_producer_to_recompressing_topic(broker):
    """The broker recompresses an idempotent producer's batches (none ->
    zstd) and keeps their producer id, epoch and sequences: every record
    once, in order."""
    topic = "idempotent-zstd"
    create_topic(broker.bootstrap, topic, 1, {"compression.type": "zstd"})
    count = 3000
    sent = [dict(key=b"k%d" % (i % 10), value=b"%06d " % i + b"payload " * (i % 8), partition=0) for i in range(count)]
    deliveries = ck_produce_ok(
        broker.bootstrap,
        topic,
        sent,
        **{"enable.idempotence": True, "compression.type": "none", "linger.ms": 20, "batch.num.messages": 200},
    )
    assert [d.offset for d in deliveries] == list(range(count)), "offsets are not dense and in produce order"

    got = ck_consume_partition(broker.bootstrap, topic, 0)
    assert [r.value for r in got] == [r["value"] for r in sent], "records missing, duplicated or out of order"
    _, _, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    assert {b.codec for b in batches} == {"zstd"}, [(b.base_offset, b.codec) for b in batches]
    assert len({(b.producer_id, b.producer_epoch) for b in batches}) == 1 and batches[0].producer_id >= 0, (
        f"producer ids/epochs of the stored batches: {sorted({(b.producer_id, b.producer_epoch) for b in batches})}"
    )
    expected_seq = 0
    for b in batches:
        assert b.base_sequence == expected_seq, f"batch at {b.base_offset}: base sequence {b.base_sequence}, not {expected_seq}"
        expected_seq += b.record_count


# ---------------------------------------------------------------------------
# Broker configs
# ---------------------------------------------------------------------------

BROKER_KEYS = {"log.retention.ms", "log.segment.bytes", "log.cleanup.policy", "message.max.bytes", "num.partitions"}


def broker_entry(bootstrap: str, key: str) -> tuple:
    """(value, source name) of a config of broker 0."""
    entry = ck_describe_configs(bootstrap, ResourceType.BROKER, "0")[key]
    return entry.value, source_of(entry)


def set_cluster_default(broker, key: str, value) -> None:
    """IncrementalAlterConfigs on the cluster-wide default broker resource
    (name ""): SET `value`, or DELETE when it is None."""
    op = (key, OP_SET, value) if value is not None else (key, OP_DELETE, None)
    error, message = incremental_alter_configs("127.0.0.1", broker.port, RESOURCE_BROKER, "", [op])
    assert error == 0, f"altering the cluster default {op}: error {error} {message}"


@pytest.mark.timeout(120)
def test_dynamic_broker_retention(start_broker):
    broker = start_broker()
    bootstrap = broker.bootstrap
    entries = ck_describe_configs(bootstrap, ResourceType.BROKER, "0")
    assert BROKER_KEYS <= set(entries), f"broker configs missing from DescribeConfigs: {BROKER_KEYS - set(entries)}"
    original = broker_entry(bootstrap, "log.retention.ms")
    print(f"log.retention.ms before: {original}")
    assert original[1] in ("STATIC_BROKER_CONFIG", "DEFAULT_CONFIG"), original
    assert original[0] != "3600000"

    create_topic(bootstrap, "ret-existing", 1)
    create_topic(bootstrap, "ret-own", 1, {"retention.ms": "86400000"})

    # Per broker.
    ck_alter_configs(bootstrap, ResourceType.BROKER, "0", {"log.retention.ms": "3600000"})
    assert broker_entry(bootstrap, "log.retention.ms") == ("3600000", "DYNAMIC_BROKER_CONFIG")
    create_topic(bootstrap, "ret-new", 1)
    assert describe_topic_config(bootstrap, "ret-new")["retention.ms"] == "3600000"
    # Topics without an override follow the broker; an override wins.
    assert describe_topic_config(bootstrap, "ret-existing")["retention.ms"] == "3600000"
    assert describe_topic_config(bootstrap, "ret-own")["retention.ms"] == "86400000"

    broker.restart()
    assert broker_entry(bootstrap, "log.retention.ms") == ("3600000", "DYNAMIC_BROKER_CONFIG"), "lost across a restart"
    assert describe_topic_config(bootstrap, "ret-new")["retention.ms"] == "3600000"
    create_topic(bootstrap, "ret-after-restart", 1)
    assert describe_topic_config(bootstrap, "ret-after-restart")["retention.ms"] == "3600000"

    # Cluster-wide default: the per-broker value still wins while it is set.
    set_cluster_default(broker, "log.retention.ms", "7200000")
    error, message, defaults = describe_configs("127.0.0.1", broker.port, RESOURCE_BROKER, "")
    assert error == 0, (error, message)
    entry = defaults.get("log.retention.ms")
    assert entry is not None and (entry.value, entry.source) == ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"), entry
    assert broker_entry(bootstrap, "log.retention.ms") == ("3600000", "DYNAMIC_BROKER_CONFIG")

    # DELETE the per-broker value: the cluster default shows through.
    ck_alter_configs(bootstrap, ResourceType.BROKER, "0", {"log.retention.ms": None})
    assert broker_entry(bootstrap, "log.retention.ms") == ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG")
    assert describe_topic_config(bootstrap, "ret-new")["retention.ms"] == "7200000"

    broker.restart()
    assert broker_entry(bootstrap, "log.retention.ms") == ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"), "lost in a restart"

    # DELETE the cluster default: back to where we started.
    set_cluster_default(broker, "log.retention.ms", None)
    assert broker_entry(bootstrap, "log.retention.ms") == original
    assert describe_topic_config(bootstrap, "ret-new")["retention.ms"] == original[0]
    broker.restart()
    assert broker_entry(bootstrap, "log.retention.ms") == original, "a deleted dynamic value came back after a restart"
    assert describe_topic_config(bootstrap, "ret-own")["retention.ms"] == "86400000"


@pytest.mark.timeout(60)
def test_read_only_and_unknown_broker_configs_refused(broker):
    before = {k: (e.value, source_of(e)) for k, e in ck_describe_configs(broker.bootstrap, ResourceType.BROKER, "0").items()}
    for key, value in (("node.id", "5"), ("listeners", "PLAINTEXT://127.0.0.1:1"), ("no.such.broker.config", "1")):
        with pytest.raises(ck.KafkaException) as refused:
            ck_alter_configs(broker.bootstrap, ResourceType.BROKER, "0", {key: value})
        err = error_of(refused.value)
        print(f"alter broker {key}={value}: {err.code()} {err.str()}")
        assert err.code() in (INVALID_CONFIG, INVALID_REQUEST) and key in err.str(), f"alter broker {key}={value}: {err}"

        # In one request with a valid change: nothing is applied.
        with pytest.raises(ck.KafkaException):
            ck_alter_configs(broker.bootstrap, ResourceType.BROKER, "0", {"log.retention.ms": "3600000", key: value})
    after = {k: (e.value, source_of(e)) for k, e in ck_describe_configs(broker.bootstrap, ResourceType.BROKER, "0").items()}
    assert after == before, "a refused alter changed broker configs"
    assert after["node.id"][0] == "0"


# ---------------------------------------------------------------------------
# Authorized operations (no authorizer)
# ---------------------------------------------------------------------------


def ops(values) -> set:
    """Names of a list of AclOperation (None when the broker sent none)."""
    return {AclOperation(op).name for op in values or ()}


@pytest.mark.timeout(90)
def test_authorized_operations_without_authorizer(start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = "authz", "authz-group"
    create_topic(broker.bootstrap, topic, 1)
    admin = ck_admin(broker.bootstrap)

    desc = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(timeout=20)
    assert ops(desc.authorized_operations) == {
        "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
    }, desc.authorized_operations  # fmt: skip

    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=20)
    assert ops(cluster.authorized_operations) == {
        "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE",
    }, cluster.authorized_operations  # fmt: skip

    consumer = ck_group_consumer(broker.bootstrap, group)

    def assigned() -> list:
        consumer.poll(0.2)
        return consumer.assignment()

    try:
        consumer.subscribe([topic])
        wait_until(assigned, timeout=30, interval=0, what="the group member to get its assignment")
        described = admin.describe_consumer_groups([group], include_authorized_operations=True)[group].result(timeout=20)
        assert ops(described.authorized_operations) == {"READ", "DESCRIBE", "DELETE"}, described.authorized_operations
    finally:
        consumer.close()
