"""Admin APIs through kafka-python's KafkaAdminClient (a pure-Python
protocol implementation), cross-checked with confluent-kafka:

  * topic configs: DescribeConfigs (all / modified), IncrementalAlterConfigs
    (SET, DELETE, validate_only, invalid values, unknown names), AlterConfigs
    (kafka-python's legacy path, and confluent-kafka's, whose omitted keys
    go back to their defaults); configs survive a broker restart;
  * consumer groups: list, describe, committed offsets, offset delete,
    group delete (and its refusal for a group with members), and the
    internal __consumer_offsets topic;
  * DeleteRecords: the low watermark moves, is clamped, survives a restart;
  * DescribeLogDirs: the broker's data directory with per-partition sizes.
"""

from __future__ import annotations

import os
import time

import confluent_kafka as ck
import kafka.errors as Errors
import pytest
from confluent_kafka.admin import ConfigResource as CkConfigResource
from confluent_kafka.admin import ResourceType
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType

from helpers import (
    FAST_GROUPS,
    ck_admin,
    ck_consume_partition,
    ck_produce_ok,
    ck_watermarks,
    describe_topic_config,
    kp_admin,
    kp_beginning_end_offsets,
    wait_for_topic,
    wait_until,
)

# The topic configs Weir supports (the ones these tests may alter).
TOPIC_CONFIGS = {
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "segment.bytes",
    "segment.ms",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.message.bytes",
}


def topic_resource(topic: str, configs=None) -> ConfigResource:
    return ConfigResource(ConfigResourceType.TOPIC, topic, configs)


def kp_configs(admin, topic: str, config_filter: str = "all") -> dict:
    """{name: value} of a topic's configs as kafka-python describes them."""
    described = admin.describe_configs([topic_resource(topic)], config_filter=config_filter)
    return {name: entry["value"] for name, entry in described["topic"][topic].items()}


def kp_alter(admin, topic: str, configs: dict, **kwargs) -> str:
    """alter_configs for one topic; returns its result ('OK' or an error)."""
    return admin.alter_configs([topic_resource(topic, configs)], **kwargs)["topic"][topic]


def kp_create_topics(admin, bootstrap: str, topics: dict) -> None:
    admin.create_topics(
        {
            name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}
            for name, (partitions, configs) in topics.items()
        },
        timeout_ms=20000,
    )
    for name, (partitions, _) in topics.items():
        wait_for_topic(bootstrap, name, partitions)


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_topic_configs_alter_describe_and_survive_restart(start_broker):
    broker = start_broker()
    admin = kp_admin(broker.bootstrap)
    try:
        kp_create_topics(
            admin,
            broker.bootstrap,
            {
                "cfg-a": (3, {"cleanup.policy": "delete", "retention.ms": "3600000"}),
                "cfg-b": (1, {}),
            },
        )
        defaults = kp_configs(admin, "cfg-b")
        assert TOPIC_CONFIGS <= set(defaults), f"configs missing from DescribeConfigs: {TOPIC_CONFIGS - set(defaults)}"

        # Only what was set at creation counts as modified (its source is
        # the topic, everything else is a default).
        assert kp_configs(admin, "cfg-a", "modified") == {"cleanup.policy": "delete", "retention.ms": "3600000"}
        assert kp_configs(admin, "cfg-b", "modified") == {}

        # IncrementalAlterConfigs: SET.
        changes = {"retention.ms": "7200000", "segment.bytes": "1048576", "max.message.bytes": "2097152",
                   "cleanup.policy": "compact", "min.compaction.lag.ms": "1000"}  # fmt: skip
        assert kp_alter(admin, "cfg-b", changes, incremental=True) == "OK"
        now = kp_configs(admin, "cfg-b")
        assert {k: now[k] for k in changes} == changes
        assert {k: v for k, v in now.items() if k not in changes} == {k: v for k, v in defaults.items() if k not in changes}
        assert kp_configs(admin, "cfg-b", "modified") == changes
        # confluent-kafka reads the same values.
        assert {k: describe_topic_config(broker.bootstrap, "cfg-b")[k] for k in changes} == changes

        # DELETE puts a config back to its default.
        assert kp_alter(admin, "cfg-b", {"segment.bytes": (AlterConfigOp.DELETE, None)}, incremental=True) == "OK"
        assert kp_configs(admin, "cfg-b")["segment.bytes"] == defaults["segment.bytes"]
        del changes["segment.bytes"]
        assert kp_configs(admin, "cfg-b", "modified") == changes

        # validate_only checks without applying.
        assert kp_alter(admin, "cfg-b", {"retention.ms": "1"}, incremental=True, validate_only=True) == "OK"
        assert kp_configs(admin, "cfg-b")["retention.ms"] == "7200000"

        # Bad values and unknown names are refused, per resource, and change nothing.
        before = kp_configs(admin, "cfg-b")
        for bad in ({"retention.ms": "not-a-number"}, {"cleanup.policy": "shred"}, {"no.such.config": "1"}):
            result = kp_alter(admin, "cfg-b", bad, incremental=True, raise_on_unknown=False)
            assert result != "OK", f"{bad} was accepted"
            print(f"{bad} -> {result}")
        assert kp_configs(admin, "cfg-b") == before

        # kafka-python's legacy AlterConfigs path: it re-sends the other
        # modified configs itself, so they are kept.
        assert kp_alter(admin, "cfg-a", {"segment.ms": "600000"}, incremental=False) == "OK"
        assert kp_configs(admin, "cfg-a", "modified") == {
            "cleanup.policy": "delete",
            "retention.ms": "3600000",
            "segment.ms": "600000",
        }
        expected_a = kp_configs(admin, "cfg-a")
        expected_b = kp_configs(admin, "cfg-b")
    finally:
        admin.close()

    broker.restart()
    admin = kp_admin(broker.bootstrap)
    try:
        assert kp_configs(admin, "cfg-a") == expected_a, "topic configs changed across a restart"
        assert kp_configs(admin, "cfg-b") == expected_b, "topic configs changed across a restart"
        assert kp_configs(admin, "cfg-b", "modified") == changes
    finally:
        admin.close()


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_legacy_alter_configs_replaces_the_whole_set(broker):
    """AlterConfigs (not incremental) sets the topic's configs to exactly the
    given ones: configs it leaves out go back to their defaults. (That is why
    kafka-python re-sends the modified ones; confluent-kafka does not.)"""
    admin = kp_admin(broker.bootstrap)
    try:
        kp_create_topics(admin, broker.bootstrap, {"cfg-legacy": (1, {"retention.ms": "3600000"}), "cfg-ref": (1, {})})
        defaults = kp_configs(admin, "cfg-ref")
        resource = CkConfigResource(ResourceType.TOPIC, "cfg-legacy", set_config={"retention.bytes": "123456"})
        ck_client = ck_admin(broker.bootstrap)  # keep the handle alive until the result is in
        futures = ck_client.alter_configs([resource], request_timeout=20)
        futures[resource].result(timeout=20)
        configs = kp_configs(admin, "cfg-legacy")
        assert configs["retention.bytes"] == "123456"
        assert configs["retention.ms"] == defaults["retention.ms"], "an omitted config must go back to its default"
        assert kp_configs(admin, "cfg-legacy", "modified") == {"retention.bytes": "123456"}
    finally:
        admin.close()


# ---------------------------------------------------------------------------
# Consumer groups
# ---------------------------------------------------------------------------


def kp_group_consumer(bootstrap: str, group: str, client_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=[bootstrap],
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )


def poll_until(consumer: KafkaConsumer, count: int, timeout: float = 30.0) -> list:
    """Poll until `count` records arrived (bounded); returns them."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records in {timeout}s"
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


@pytest.mark.timeout(120)
def test_consumer_groups_list_describe_offsets_delete(start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group, busy = "kp-groups", "kp-admin-group", "kp-busy-group"
    admin = kp_admin(broker.bootstrap)
    consumer = busy_consumer = None
    try:
        kp_create_topics(admin, broker.bootstrap, {topic: (2, {})})
        ck_produce_ok(broker.bootstrap, topic, [dict(value=b"%d" % i, partition=i % 2) for i in range(30)])

        # A group with one member that consumed and committed everything.
        consumer = kp_group_consumer(broker.bootstrap, group, "kp-admin-consumer")
        consumer.subscribe([topic])
        assert sorted(int(r.value) for r in poll_until(consumer, 30)) == list(range(30))
        consumer.commit()

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert group in listed, listed
        assert listed[group]["protocol_type"] == "consumer", listed[group]

        described = admin.describe_groups([group])[group]
        print(f"describe_groups: {described}")
        assert described["error"] is None
        assert described["group_state"] == "Stable"
        assert described["protocol_type"] == "consumer"
        assert described["protocol_data"], "the chosen assignor should be named"
        (member,) = described["members"]
        assert member["client_id"] == "kp-admin-consumer" and member["member_id"], member
        assigned = member["member_assignment"]["assigned_partitions"]
        assert {(a["topic"], p) for a in assigned for p in a["partitions"]} == {(topic, 0), (topic, 1)}, member

        offsets = admin.list_group_offsets(group)[group]
        assert {tp: om.offset for tp, om in offsets.items()} == {TopicPartition(topic, 0): 15, TopicPartition(topic, 1): 15}

        # The offsets live in the internal, compacted __consumer_offsets.
        (internal,) = admin.describe_topics(["__consumer_offsets"])
        assert internal["error_code"] == 0 and internal["is_internal"] is True, internal
        assert kp_configs(admin, "__consumer_offsets")["cleanup.policy"] == "compact"

        # A group with an active member cannot be deleted.
        busy_consumer = kp_group_consumer(broker.bootstrap, busy, "kp-busy-consumer")
        busy_consumer.subscribe([topic])
        poll_until(busy_consumer, 30)
        assert admin.delete_groups([busy])[busy] == "NonEmptyGroupError"

        # Once the member has left, the group is Empty but keeps its offsets.
        consumer.close()
        consumer = None
        described = wait_until(
            lambda: (d := admin.describe_groups([group])[group])["group_state"] == "Empty" and d,
            timeout=10,
            what=f"{group} to be Empty after its member left",
        )
        assert described["members"] == []
        assert len(admin.list_group_offsets(group)[group]) == 2

        # OffsetDelete removes one partition's committed offset.
        deleted = admin.delete_group_offsets(group, [TopicPartition(topic, 0)])
        assert deleted == {TopicPartition(topic, 0): Errors.NoError}, deleted
        offsets = admin.list_group_offsets(group)[group]
        assert {tp: om.offset for tp, om in offsets.items() if om.offset >= 0} == {TopicPartition(topic, 1): 15}

        # DeleteGroups removes an empty group; a second delete finds nothing.
        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.delete_groups([group])[group] == "GroupIdNotFoundError"
        assert busy in {g["group_id"] for g in admin.list_groups()}
    finally:
        for c in (consumer, busy_consumer):
            if c is not None:
                c.close()
        admin.close()


# ---------------------------------------------------------------------------
# DeleteRecords
# ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_delete_records_moves_low_watermark(start_broker):
    broker = start_broker()
    topic = "kp-delete-records"
    admin = kp_admin(broker.bootstrap)
    try:
        kp_create_topics(admin, broker.bootstrap, {topic: (2, {})})
        ck_produce_ok(broker.bootstrap, topic, [dict(value=b"%d" % i, partition=i % 2) for i in range(200)])
        p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

        result = admin.delete_records({p0: 40, p1: -1}, timeout_ms=20000)  # -1: up to the high watermark
        assert {tp: r["low_watermark"] for tp, r in result.items()} == {p0: 40, p1: 100}, result
        assert ck_watermarks(broker.bootstrap, topic, 0) == (40, 100)
        assert ck_watermarks(broker.bootstrap, topic, 1) == (100, 100)
        assert kp_beginning_end_offsets(broker.bootstrap, topic, 0) == (40, 100)

        # Reading from the beginning starts at the new log start.
        records = ck_consume_partition(broker.bootstrap, topic, 0, ck.OFFSET_BEGINNING)
        assert [r.offset for r in records] == list(range(40, 100))
        assert [int(r.value) for r in records] == list(range(80, 200, 2))

        # Deleting below the log start changes nothing; beyond the end is an error.
        result = admin.delete_records({p0: 10}, timeout_ms=20000)
        assert result[p0]["low_watermark"] == 40
        with pytest.raises(Errors.OffsetOutOfRangeError):
            admin.delete_records({p0: 1000}, timeout_ms=20000)
        assert ck_watermarks(broker.bootstrap, topic, 0) == (40, 100)
    finally:
        admin.close()

    # The new log start survives a restart, and offsets continue.
    broker.restart()
    assert ck_watermarks(broker.bootstrap, topic, 0) == (40, 100)
    assert ck_watermarks(broker.bootstrap, topic, 1) == (100, 100)
    (d,) = ck_produce_ok(broker.bootstrap, topic, [dict(value=b"after", partition=1)])
    assert d.offset == 100


# ---------------------------------------------------------------------------
# DescribeLogDirs
# ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_describe_log_dirs(broker):
    topic = "kp-log-dirs"
    admin = kp_admin(broker.bootstrap)
    try:
        kp_create_topics(admin, broker.bootstrap, {topic: (2, {})})
        ck_produce_ok(broker.bootstrap, topic, [dict(value=b"x" * 1000, partition=0) for _ in range(100)])

        answer = admin.describe_log_dirs()
        print(f"describe_log_dirs: {answer}")
        (per_broker,) = answer
        dirs = per_broker["log_dirs"]
        assert dirs and all(d["error_code"] == 0 for d in dirs), dirs
        data_dir = os.path.realpath(broker.data_dir)
        sizes = {}
        for d in dirs:
            path = os.path.realpath(d["log_dir"])
            assert path == data_dir or path.startswith(data_dir + os.sep), f"log dir {d['log_dir']} is not under {data_dir}"
            for t in d["topics"]:
                if t["name"] == topic:
                    for p in t["partitions"]:
                        sizes[p["partition_index"]] = p["partition_size"]
        assert set(sizes) == {0, 1}, f"partitions of {topic} in the answer: {sizes}"
        assert sizes[0] >= 100 * 1000, f"partition 0 holds 100 KB of values but reports {sizes[0]} bytes"
        assert sizes[1] < sizes[0] and sizes[1] < 1000, f"partition 1 is empty but reports {sizes[1]} bytes"

        # Asking for one topic answers for that topic only.
        (per_broker,) = admin.describe_log_dirs(topic_partitions={topic: [0]})
        named = {(t["name"], p["partition_index"]) for d in per_broker["log_dirs"] for t in d["topics"] for p in t["partitions"]}
        assert named == {(topic, 0)}, named
    finally:
        admin.close()
