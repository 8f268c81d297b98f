"""A full disk: produces fail with a clear error, nothing acknowledged is lost, the broker
keeps serving reads, and it accepts writes again once space is freed.

The data directory is a small tmpfs mounted for this test (root is needed to mount; CI runs
as root). The topic rolls 256 KiB segments so that DeleteRecords can free whole segments.
"""

import os
import subprocess
import time

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient

from conftest import WeirBroker
from helpers import Delivery, ck_consume_partition, ck_producer, create_topic

TMPFS_BYTES = 6 * 1024 * 1024
RECORD = 1024


@pytest.fixture
def small_disk_broker(weir_bin, tmp_path):
    broker = WeirBroker(weir_bin, tmp_path, name="full")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(broker.data_dir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        broker.start()
        yield broker
        assert broker.stop() == 0, "the broker must shut down cleanly once space is back"
    finally:
        if broker.running:
            broker.kill9()
        subprocess.run(["umount", "-l", str(broker.data_dir)], check=False)


def produce(bootstrap, topic, ids, timeout=60.0):
    producer = ck_producer(bootstrap, **{"message.timeout.ms": 4000, "linger.ms": 20})
    results = {}

    def on_delivery(err, msg, i):
        results[i] = Delivery(value=msg.value(), error=err, partition=msg.partition(), offset=msg.offset(), done=True)

    for i in ids:
        value = f"{i:08d}".encode() + os.urandom(RECORD - 8)
        while True:
            try:
                producer.produce(topic, value=value, partition=0, on_delivery=lambda e, m, i=i: on_delivery(e, m, i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    deadline = time.monotonic() + timeout
    while len(producer) > 0 and time.monotonic() < deadline:
        producer.poll(0.1)
    assert len(producer) == 0, "deliveries did not finish"
    return results


@pytest.mark.timeout(180)
def test_full_disk_refuses_writes_loses_nothing_and_recovers(small_disk_broker):
    broker = small_disk_broker
    topic = "fills-the-disk"
    create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(256 * 1024)})

    # Twice the disk: the second half cannot fit.
    results = produce(broker.bootstrap, topic, range(2 * TMPFS_BYTES // RECORD))
    acked = sorted((d.offset, i) for i, d in results.items() if d.error is None)
    failed = [d.error for d in results.values() if d.error is not None]
    assert acked, "nothing was written at all"
    assert failed, "the disk never filled up"
    codes = {e.code() for e in failed}
    assert codes <= {ck.KafkaError.KAFKA_STORAGE_ERROR, ck.KafkaError._MSG_TIMED_OUT}, codes
    print(f"acknowledged {len(acked)}, refused {len(failed)} ({sorted(codes)})")
    assert broker.running, "the broker died on a full disk"

    # Every acknowledged record is there exactly once, at the offset its ack named, and nothing
    # else is: offsets are dense from 0.
    records = ck_consume_partition(broker.bootstrap, topic, 0, ck.OFFSET_BEGINNING)
    got = [(r.offset, int(r.value[:8])) for r in records]
    assert got == acked, f"{len(got)} records in the log, {len(acked)} acknowledged"
    assert [o for o, _ in got] == list(range(len(got)))

    # Free space by deleting everything before the end, then writing works again.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    end = len(got)
    futures = admin.delete_records([ck.TopicPartition(topic, 0, end)])
    for f in futures.values():
        f.result(timeout=20)
    after = produce(broker.bootstrap, topic, range(10_000_000, 10_000_050))
    assert all(d.error is None for d in after.values()), {d.error for d in after.values()}
    tail = ck_consume_partition(broker.bootstrap, topic, 0, end)
    assert [int(r.value[:8]) for r in tail] == list(range(10_000_000, 10_000_050))
    assert [r.offset for r in tail] == list(range(end, end + 50))
