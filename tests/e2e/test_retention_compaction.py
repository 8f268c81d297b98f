"""Log retention (by time and by size) and log compaction, observed through
real clients.

The broker runs its retention/compaction pass every 200 ms
(WEIR_LOG__RETENTION_CHECK_INTERVAL_MS) and topics use 1 KiB segments, so a
few dozen records roll many segments. The rules under test:
  * retention deletes whole closed segments only, never the active one;
  * compaction rewrites closed segments only, keeps the latest record per
    key at its original offset, keeps records with unique keys, and drops
    tombstones older than delete.retention.ms.
Each test waits (bounded) for the background pass to reach the expected
state, then checks the whole log.
"""

from __future__ import annotations

import time
from collections import Counter

import confluent_kafka as ck
import pytest

from helpers import (
    ck_consume_partition,
    ck_produce,
    ck_producer,
    ck_watermarks,
    create_topic,
    kp_beginning_end_offsets,
    wait_until,
)

FAST_CLEANER = {"WEIR_LOG__RETENTION_CHECK_INTERVAL_MS": "200"}
SEGMENT_BYTES = 1024
VALUE_BYTES = 200  # every retention-test value is at least this long


def padded_value(i: int) -> bytes:
    """A value of exactly VALUE_BYTES that names its sequence number."""
    head = b"record-%05d:" % i
    return head + b"x" * (VALUE_BYTES - len(head))


def produce_one_batch_each(bootstrap: str, topic: str, records: list) -> list:
    """Produce each record as its own batch (flush after every record) so
    segments roll at predictable places. Returns the acknowledged offsets."""
    producer = ck_producer(bootstrap, **{"linger.ms": 0})
    deliveries = ck_produce(producer, topic, records, flush_each=True)
    errors = [d.error for d in deliveries if d.error is not None]
    assert not errors, f"produce failed: {errors[:3]}"
    return [d.offset for d in deliveries]


def produce_as_batches(bootstrap: str, topic: str, batches: list) -> list:
    """Produce each list in `batches` as one record batch (a long linger
    holds the records back until the flush at the end of each list)."""
    producer = ck_producer(bootstrap, **{"linger.ms": 10000})
    offsets = []
    for batch in batches:
        deliveries = ck_produce(producer, topic, batch)
        errors = [d.error for d in deliveries if d.error is not None]
        assert not errors, f"produce failed: {errors[:3]}"
        offsets.extend(d.offset for d in deliveries)
    return offsets


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------


def test_time_retention_deletes_expired_closed_segments(start_broker):
    broker = start_broker(env=FAST_CLEANER)
    topic = "retention-by-time"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {"cleanup.policy": "delete", "segment.bytes": str(SEGMENT_BYTES), "retention.ms": "1000"},
    )
    count = 40
    offsets = produce_one_batch_each(broker.bootstrap, topic, [dict(value=padded_value(i), partition=0) for i in range(count)])
    assert offsets == list(range(count))

    # Every record is older than 1 s soon, so every closed segment goes.
    # What remains is the active segment: at most SEGMENT_BYTES of batches,
    # each holding a value of VALUE_BYTES, and at least the last batch.
    max_in_active = SEGMENT_BYTES // VALUE_BYTES

    def settled():
        low, high = ck_watermarks(broker.bootstrap, topic, 0)
        assert 0 < low and high - low <= max_in_active, f"watermarks now ({low}, {high})"
        return low, high

    low, high = wait_until(settled, timeout=30, interval=0.2, what="time retention to drop the closed segments")
    assert high == count, "retention must not change the high watermark"
    assert low <= count - 1, "the active segment (holding the last record) must be kept"

    # Reading from the beginning starts at the new log start, and everything
    # from there on is intact.
    records = ck_consume_partition(broker.bootstrap, topic, 0, ck.OFFSET_BEGINNING)
    assert [r.offset for r in records] == list(range(low, count))
    assert [r.value for r in records] == [padded_value(i) for i in range(low, count)]

    # A consumer positioned at the deleted offset 0 gets OFFSET_OUT_OF_RANGE:
    # with auto.offset.reset=earliest it moves to the log start...
    records = ck_consume_partition(broker.bootstrap, topic, 0, 0, **{"auto.offset.reset": "earliest"})
    assert records and records[0].offset == low
    # ...and with the strict default it reports the error instead of
    # silently skipping the deleted records.
    with pytest.raises(ck.KafkaException):
        ck_consume_partition(broker.bootstrap, topic, 0, 0, timeout=20)

    # kafka-python sees the same log start and end (ListOffsets).
    assert kp_beginning_end_offsets(broker.bootstrap, topic, 0) == (low, count)

    # After a graceful restart the deleted segments stay deleted and offsets
    # continue where they were.
    broker.restart()
    low_after, high_after = ck_watermarks(broker.bootstrap, topic, 0)
    assert low_after >= low and high_after == count
    offsets = produce_one_batch_each(broker.bootstrap, topic, [dict(value=padded_value(count), partition=0)])
    assert offsets == [count]


def test_size_retention_keeps_log_near_retention_bytes(start_broker):
    broker = start_broker(env=FAST_CLEANER)
    topic = "retention-by-size"
    retention_bytes = 3 * SEGMENT_BYTES
    # retention.ms is left at its default (days), so only size applies.
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {"cleanup.policy": "delete", "segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(retention_bytes)},
    )
    count = 60  # > 12 KiB of batches: four times retention.bytes
    produce_one_batch_each(broker.bootstrap, topic, [dict(value=padded_value(i), partition=0) for i in range(count)])

    # Whatever the exact deletion rule, once retention has run the log holds
    # less than retention.bytes plus one segment (so, as every record takes
    # more than VALUE_BYTES, fewer than this many records)...
    most = (retention_bytes + SEGMENT_BYTES) // VALUE_BYTES
    # ...and more than retention.bytes minus one segment: generously, with
    # up to 2 * VALUE_BYTES per batch on disk, at least this many records.
    least = (retention_bytes - SEGMENT_BYTES) // (2 * VALUE_BYTES)

    def settled():
        low, high = ck_watermarks(broker.bootstrap, topic, 0)
        assert 0 < low and high - low <= most, f"watermarks now ({low}, {high})"
        return low, high

    wait_until(settled, timeout=30, interval=0.2, what="size retention to trim the log")
    time.sleep(1.0)  # a few more cleaner passes must not delete further
    low, high = ck_watermarks(broker.bootstrap, topic, 0)
    assert high == count
    assert least <= high - low <= most, f"{high - low} records left (expected {least}..{most})"

    # The oldest records went first: what is left is the newest, intact.
    records = ck_consume_partition(broker.bootstrap, topic, 0, ck.OFFSET_BEGINNING)
    assert [r.offset for r in records] == list(range(low, count))
    assert [r.value for r in records] == [padded_value(i) for i in range(low, count)]


# ---------------------------------------------------------------------------
# Compaction
# ---------------------------------------------------------------------------

KEYS = [b"k%d" % j for j in range(10)]
VERSIONS = 20


def test_compaction_keeps_latest_per_key_and_drops_tombstones(start_broker):
    broker = start_broker(env=FAST_CLEANER)
    topic = "compacted"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        {
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "500",
        },
    )

    # Phase 1: VERSIONS batches, each with one new version of every key plus
    # one record with a unique key. Compaction must rewrite these batches,
    # keeping the unique record out of each.
    batches = [
        [dict(key=k, value=b"%s=v%d" % (k, v), partition=0) for k in KEYS]
        + [dict(key=b"unique-%d" % v, value=b"unique-value-%d" % v, partition=0)]
        for v in range(VERSIONS)
    ]
    offsets = produce_as_batches(broker.bootstrap, topic, batches)
    expected = {}  # offset -> (key, value) of every record that must survive
    for (record, offset) in zip([r for b in batches for r in b], offsets):
        if record["key"].startswith(b"unique-") or record["value"].endswith(b"=v%d" % (VERSIONS - 1)):
            expected[offset] = (record["key"], record["value"])

    # Filler with distinct keys rolls segments, so that every version of the
    # ten keys sits in a closed (compactable) segment.
    fillers = [dict(key=b"filler-%d" % i, value=b"filler-value-%d" % i, partition=0) for i in range(30)]
    for record, offset in zip(fillers, produce_one_batch_each(broker.bootstrap, topic, fillers)):
        expected[offset] = (record["key"], record["value"])
    high = max(expected) + 1

    def read_log():
        return ck_consume_partition(broker.bootstrap, topic, 0, ck.OFFSET_BEGINNING)

    def keys_compacted():
        records = read_log()
        counts = Counter(r.key for r in records)
        assert all(counts[k] == 1 for k in KEYS), f"copies per key now: {[counts[k] for k in KEYS]}"
        return records

    records = wait_until(keys_compacted, timeout=30, interval=0.3, what="compaction to leave one record per key")
    got = {r.offset: (r.key, r.value) for r in records}
    assert got == expected, "after compaction the log must hold exactly the latest value per key, at its original offset"
    assert [r.offset for r in records] == sorted(got), "offsets must stay in order"
    assert ck_watermarks(broker.bootstrap, topic, 0)[1] == high, "compaction must not change the high watermark"

    # Phase 2: delete k3 with a tombstone, then roll past it. Once the
    # tombstone is older than delete.retention.ms (500 ms) and its segment
    # is closed, both the old value and the tombstone must disappear.
    deleted = b"k3"
    producer = ck_producer(broker.bootstrap)
    (tombstone,) = ck_produce(producer, topic, [dict(key=deleted, value=None, partition=0)])
    assert tombstone.error is None
    more = [dict(key=b"filler2-%d" % i, value=b"filler2-value-%d-" % i + b"y" * 100, partition=0) for i in range(60)]
    for record, offset in zip(more, produce_one_batch_each(broker.bootstrap, topic, more)):
        expected[offset] = (record["key"], record["value"])
    expected = {o: kv for o, kv in expected.items() if kv[0] != deleted}

    def key_deleted():
        records = read_log()
        left = [(r.offset, r.value) for r in records if r.key == deleted]
        assert not left, f"records for {deleted!r} still in the log: {left}"
        return records

    records = wait_until(key_deleted, timeout=30, interval=0.3, what=f"tombstone for {deleted!r} to be cleaned away")
    got = {r.offset: (r.key, r.value) for r in records}
    assert got == expected, "after the tombstone is cleaned, the other keys and all unique records must remain"
