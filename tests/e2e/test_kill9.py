"""Crash safety: SIGKILL the broker 20 times while a producer keeps writing.

A confluent-kafka producer (acks=all, no retries, no idempotence) produces
records with unique ids to a 3-partition topic from a background thread,
while the main thread SIGKILLs and restarts the broker 20 times. Because
the producer never retries, a record is sent at most once: an acknowledged
record must be in the log exactly once, at the partition/offset its ack
named; an unacknowledged one may or may not be there, but never twice.
After the last restart every partition must read back densely from 0.

SIGKILL lets the kernel keep whatever the broker already wrote, so this
holds with WEIR_LOG__FLUSH=none (the default) as long as the broker writes
a batch to its log file before acknowledging it; the flush=batch variant
runs the same scenario with an fsync per batch.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import confluent_kafka as ck
import pytest

from helpers import ck_consume_partition, ck_producer, ck_watermarks, create_topic

ROUNDS = 20
PARTITIONS = 3
TOPIC = "crashy"
FINAL_BATCH = 1000
RATE = 2000  # records per second from the background producer


class BackgroundProducer:
    """Produces unique ids continuously (RATE records/s) on its own thread
    and records the outcome of every delivery report."""

    def __init__(self, bootstrap: str):
        self.producer = ck_producer(
            bootstrap,
            **{
                "acks": "all",
                # Never resend: a record reaches the broker at most once.
                "message.send.max.retries": 0,
                # Undelivered records fail after 10 s instead of 5 minutes.
                "message.timeout.ms": 10000,
                "request.timeout.ms": 5000,
                # Reconnect quickly after each restart.
                "reconnect.backoff.ms": 20,
                "reconnect.backoff.max.ms": 200,
                "linger.ms": 2,
                "partitioner": "murmur2_random",
                # librdkafka >= 2.10 "re-bootstraps" when every known broker
                # is down, which adds ~1 s of dead time per crash and can
                # stall production across back-to-back restarts. With one
                # broker at a fixed address, plain reconnecting is enough.
                "metadata.recovery.strategy": "none",
            },
        )
        self.next_id = 0
        self.acked: dict = {}  # id -> (partition, offset)
        self.failed: dict = {}  # id -> error string
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def _on_delivery(self, err, msg) -> None:
        record_id = int(msg.value())
        if err is None:
            self.acked[record_id] = (msg.partition(), msg.offset())
        else:
            self.failed[record_id] = str(err)

    def produce_one(self) -> None:
        """Produce the next id; on BufferError (local queue full) the id is
        not used and the error propagates."""
        record_id = self.next_id
        # A key spreads records over the partitions deterministically.
        self.producer.produce(TOPIC, key=b"k%d" % (record_id % 97), value=b"%d" % record_id, on_delivery=self._on_delivery)
        self.next_id += 1

    def _run(self) -> None:
        try:
            started = time.monotonic()
            while not self._stop.is_set():
                # Pace production at RATE records/s: top up to the number
                # due by now, then serve delivery reports for a moment.
                due = int((time.monotonic() - started) * RATE)
                while self.next_id < due:
                    try:
                        self.produce_one()
                    except BufferError:
                        break
                self.producer.poll(0.005)
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "producer thread did not stop"
        if self._error is not None:
            raise self._error

    def flush(self, timeout: float) -> None:
        remaining = self.producer.flush(timeout)
        assert remaining == 0, f"{remaining} records still undelivered after {timeout}s"


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "flush_mode",
    [
        pytest.param(None, id="flush-default"),
        pytest.param("batch", id="flush-batch"),
    ],
)
def test_acknowledged_records_survive_repeated_sigkill(start_broker, flush_mode):
    env = {"WEIR_LOG__FLUSH": flush_mode} if flush_mode else {}
    broker = start_broker(env=env)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)

    seed = int(os.environ.get("WEIR_E2E_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"random seed {seed} (set WEIR_E2E_SEED to replay)")

    producer = BackgroundProducer(broker.bootstrap)
    producer.start()
    acked_before_round = []
    try:
        for round_no in range(ROUNDS):
            time.sleep(rng.uniform(0.3, 0.8))
            acked_before_round.append(len(producer.acked))
            broker.kill9()
            broker.restart()
        time.sleep(0.5)
    finally:
        producer.stop()

    # The broker is up and stable now: with it up, every new record must be
    # acknowledged (no in-flight request can be cut off any more).
    first_final = producer.next_id
    for _ in range(FINAL_BATCH):
        while True:
            try:
                producer.produce_one()
                break
            except BufferError:
                producer.producer.poll(0.05)
        producer.producer.poll(0)
    producer.flush(timeout=60)
    final_ids = range(first_final, producer.next_id)
    not_acked = [i for i in final_ids if i not in producer.acked]
    assert not not_acked, (
        f"{len(not_acked)} of the {FINAL_BATCH} records produced after the last restart failed, "
        f"e.g. {[(i, producer.failed.get(i)) for i in not_acked[:5]]}"
    )

    produced = producer.next_id
    acked = producer.acked
    failed_errors = Counter(producer.failed.values())
    print(
        f"produced {produced}, acknowledged {len(acked)}, failed {len(producer.failed)}; "
        f"failure reasons: {failed_errors.most_common(5)}"
    )
    # The scenario only means something if the producer really was writing
    # across the crashes: acknowledgements must keep arriving between kills.
    progressed = sum(1 for a, b in zip(acked_before_round, acked_before_round[1:]) if b > a)
    assert progressed >= ROUNDS // 2, f"acks only grew in {progressed} of {ROUNDS - 1} rounds: {acked_before_round}"

    # Read everything back after the last restart.
    where: dict = {}
    duplicates = []
    for partition in range(PARTITIONS):
        low, high = ck_watermarks(broker.bootstrap, TOPIC, partition)
        assert low == 0, f"partition {partition}: log start moved to {low}"
        records = ck_consume_partition(broker.bootstrap, TOPIC, partition, 0, timeout=120)
        offsets = [r.offset for r in records]
        assert offsets == list(range(high)), (
            f"partition {partition}: offsets are not dense 0..{high - 1} "
            f"(got {len(offsets)} records, first gaps/dups near "
            f"{[o for i, o in enumerate(offsets) if o != i][:5]})"
        )
        for r in records:
            record_id = int(r.value)
            assert 0 <= record_id < produced, f"unknown record {r.value!r} at {partition}/{r.offset}"
            if record_id in where:
                duplicates.append((record_id, where[record_id], (partition, r.offset)))
            where[record_id] = (partition, r.offset)

    assert not duplicates, f"{len(duplicates)} ids stored twice, e.g. {duplicates[:5]}"
    lost = sorted(i for i in acked if i not in where)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {[(i, acked[i]) for i in lost[:5]]}"
    moved = [(i, acked[i], where[i]) for i in acked if acked[i] != where[i]]
    assert not moved, f"{len(moved)} acknowledged records not at their acknowledged offset, e.g. {moved[:5]}"
    print(f"{len(where)} records in the log, {len(where) - len(acked)} of them unacknowledged but kept")
