"""100,000 keyed + 100,000 unkeyed records through each real client library.

For confluent-kafka (librdkafka) and kafka-python, each on a fresh broker:
  * create a 3-partition topic with the client's own admin API;
  * produce 100k keyed records (1,000 distinct keys, 100 records each) and
    100k records without keys, every value carrying a unique id;
  * consume every partition from offset 0 with assign() and check that
    nothing was lost or duplicated, offsets are dense 0..n-1, each record
    sits exactly where its delivery report said, equal keys landed in one
    partition (the client's murmur2 partitioner), and unkeyed records were
    spread over all partitions.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka.partitioner.default import murmur2

from helpers import (
    KpDeliveries,
    ck_consume_partition,
    ck_produce,
    ck_producer,
    ck_watermarks,
    create_topic,
    kp_consume_partition,
    kp_create_topic,
    kp_producer,
)

PARTITIONS = 3
KEYED = 100_000
UNKEYED = 100_000
DISTINCT_KEYS = 1_000


def key_for(record_id: int) -> bytes:
    return b"key-%d" % (record_id % DISTINCT_KEYS)


def value_for(record_id: int) -> bytes:
    # Unique id first; some padding so batches are not trivially tiny.
    return b"%d|payload-%08d" % (record_id, record_id)


def id_of(value: bytes) -> int:
    return int(value.split(b"|", 1)[0])


def murmur2_partition(key: bytes) -> int:
    """The Java-compatible murmur2 partitioner used by kafka-python's default
    partitioner and librdkafka's murmur2_random."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def all_records():
    """(id, key or None) for every record, keyed ones first."""
    for i in range(KEYED):
        yield i, key_for(i)
    for i in range(KEYED, KEYED + UNKEYED):
        yield i, None


# -- per-client produce / consume --------------------------------------------


def produce_confluent(bootstrap: str, topic: str) -> dict:
    """Returns {id: (partition, offset)} from the delivery reports."""
    producer = ck_producer(
        bootstrap,
        partitioner="murmur2_random",  # Java-compatible hashing of keys
        **{"linger.ms": 10, "batch.num.messages": 10000},
    )
    deliveries = ck_produce(
        producer,
        topic,
        (dict(key=key, value=value_for(i)) for i, key in all_records()),
        timeout=240,
    )
    errors = [d.error for d in deliveries if d.error is not None]
    assert not errors, f"{len(errors)} deliveries failed, e.g. {errors[:3]}"
    return {id_of(d.value): (d.partition, d.offset) for d in deliveries}


def produce_kafka_python(bootstrap: str, topic: str) -> dict:
    producer = kp_producer(bootstrap, linger_ms=10, batch_size=256 * 1024)
    tracker = KpDeliveries()
    try:
        for i, key in all_records():
            tracker.track(producer.send(topic, key=key, value=value_for(i)), i)
        producer.flush(timeout=240)
    finally:
        producer.close(timeout=30)
    assert not tracker.failed, f"{len(tracker.failed)} sends failed, e.g. {list(tracker.failed.items())[:3]}"
    assert len(tracker.ok) == KEYED + UNKEYED, f"only {len(tracker.ok)} sends acknowledged"
    return dict(tracker.ok)


CLIENTS = {
    "confluent-kafka": dict(create=create_topic, produce=produce_confluent, consume=ck_consume_partition),
    "kafka-python": dict(create=kp_create_topic, produce=produce_kafka_python, consume=kp_consume_partition),
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_100k_keyed_and_100k_unkeyed(broker, client):
    ops = CLIENTS[client]
    topic = f"bulk-{client}"
    ops["create"](broker.bootstrap, topic, PARTITIONS)

    started = time.monotonic()
    acked = ops["produce"](broker.bootstrap, topic)
    produced_in = time.monotonic() - started
    assert len(acked) == KEYED + UNKEYED
    assert len(set(acked.values())) == len(acked), "two records were acknowledged at the same partition/offset"

    started = time.monotonic()
    by_partition = {p: ops["consume"](broker.bootstrap, topic, p, 0, timeout=300) for p in range(PARTITIONS)}
    consumed_in = time.monotonic() - started
    print(f"{client}: produced in {produced_in:.1f}s, consumed in {consumed_in:.1f}s")

    seen_ids: dict = {}
    key_partitions = defaultdict(set)
    unkeyed_per_partition = defaultdict(int)
    for partition, records in by_partition.items():
        # Offsets dense from 0 to the high watermark, in order.
        low, high = ck_watermarks(broker.bootstrap, topic, partition)
        assert (low, len(records)) == (0, high), f"partition {partition}: watermarks {(low, high)}, {len(records)} records"
        assert [r.offset for r in records] == list(range(high)), f"partition {partition}: offsets not dense"
        for r in records:
            record_id = id_of(r.value)
            assert record_id not in seen_ids, f"id {record_id} at {seen_ids[record_id]} and {(partition, r.offset)}"
            seen_ids[record_id] = (partition, r.offset)
            assert r.value == value_for(record_id)
            if record_id < KEYED:
                assert r.key == key_for(record_id)
                key_partitions[r.key].add(partition)
            else:
                assert r.key is None
                unkeyed_per_partition[partition] += 1

    # Nothing lost, nothing extra, and each record is where the broker said.
    assert len(seen_ids) == KEYED + UNKEYED
    mismatched = [(i, acked[i], seen_ids[i]) for i in acked if acked[i] != seen_ids.get(i)]
    assert not mismatched, f"{len(mismatched)} records not at their acknowledged position, e.g. {mismatched[:3]}"

    # Equal keys -> equal partition, and that partition is murmur2's choice.
    assert len(key_partitions) == DISTINCT_KEYS
    split = {k: ps for k, ps in key_partitions.items() if len(ps) != 1}
    assert not split, f"keys found in several partitions: {dict(list(split.items())[:5])}"
    wrong = {k: ps for k, ps in key_partitions.items() if ps != {murmur2_partition(k)}}
    assert not wrong, f"keys not in their murmur2 partition: {dict(list(wrong.items())[:5])}"

    # Unkeyed records are spread over every partition (random/sticky
    # partitioning: each partition gets a fair share, far above 1%).
    assert sorted(unkeyed_per_partition) == list(range(PARTITIONS)), dict(unkeyed_per_partition)
    for partition, count in unkeyed_per_partition.items():
        assert count >= UNKEYED // 100, f"partition {partition} got only {count} unkeyed records"
