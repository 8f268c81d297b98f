"""Client-side helpers shared by the Weir end-to-end tests.

Everything here talks to the broker through real Kafka clients
(confluent-kafka / librdkafka and kafka-python) or through the `weir` CLI.
Every wait is bounded: helpers take a timeout and fail with a descriptive
AssertionError when it runs out, so a misbehaving broker fails a test rather
than hanging the suite.

Client settings that matter for Weir:
  * The read helpers (ck_consumer, ck_consume_partition, kp_consumer, ...)
    only ever assign() explicit offsets and never commit, so they test the
    log without the group coordinator. confluent-kafka's Python wrapper
    refuses to build a Consumer without group.id, so a dummy group.id is set;
    librdkafka only contacts a group coordinator for partitions assigned at
    OFFSET_STORED or for commits, neither of which happens there. Tests of
    consumer groups use ck_group_consumer (subscribe(), real commits).
  * The producer helpers disable idempotence explicitly (kafka-python >= 3
    enables it by default), so that the log tests do not depend on producer
    ids; test_idempotence.py turns it on.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import time
from typing import Callable, Iterable, Optional, TypeVar

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

T = TypeVar("T")

# A group.id that is never used for any group operation (see module docstring).
UNUSED_GROUP_ID = "weir-e2e-unused-group"

# Broker settings for consumer group tests: a short initial rebalance delay
# (default 300 ms) so that groups form quickly.
FAST_GROUPS = {"WEIR_BROKER__GROUP_INITIAL_REBALANCE_DELAY_MS": "100"}


# ---------------------------------------------------------------------------
# Generic bounded waiting
# ---------------------------------------------------------------------------


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns a truthy value or `timeout` seconds pass.

    Returns the truthy value. Exceptions raised by `probe` count as "not yet"
    and the last one is reported on timeout, so a probe can explain itself
    by failing an assert.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}; last result: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (what Kafka timestamps use)."""
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------
# A client-neutral view of a consumed record
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: tuple  # ((name: str, value: bytes | None), ...) in wire order
    timestamp: int  # milliseconds since the epoch
    create_time: bool  # True when the timestamp type is CreateTime
    log_append_time: bool = False  # True when the timestamp type is LogAppendTime


# ---------------------------------------------------------------------------
# confluent-kafka (librdkafka)
# ---------------------------------------------------------------------------


def ck_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0) -> None:
    """Wait until metadata shows `topic` with `partitions` partitions, each led by a broker.

    Uses AdminClient.list_topics() without a topic argument so that the
    metadata request itself never auto-creates the topic.
    """
    admin = ck_admin(bootstrap)

    def ready() -> bool:
        md = admin.list_topics(timeout=5)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or len(tmd.partitions) != partitions:
            return False
        return all(p.error is None and p.leader >= 0 for p in tmd.partitions.values())

    wait_until(ready, timeout=timeout, what=f"topic {topic!r} with {partitions} partitions in metadata")


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    config: Optional[dict] = None,
    timeout: float = 30.0,
) -> None:
    """Create a topic with confluent-kafka's AdminClient (CreateTopics) and wait for it."""
    admin = ck_admin(bootstrap)
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    futures = admin.create_topics([new], request_timeout=timeout, operation_timeout=timeout)
    futures[topic].result(timeout=timeout)  # raises KafkaException on a broker error
    wait_for_topic(bootstrap, topic, partitions, timeout=timeout)


def describe_topic_config(bootstrap: str, topic: str, timeout: float = 20.0) -> dict:
    """DescribeConfigs for a topic, as {name: value}."""
    entries = ck_describe_configs(bootstrap, ResourceType.TOPIC, topic, timeout=timeout)
    return {name: entry.value for name, entry in entries.items()}


def ck_describe_configs(bootstrap: str, restype: ResourceType, name: str, timeout: float = 20.0) -> dict:
    """DescribeConfigs for one resource (a topic, or a broker by its id), as
    {name: confluent_kafka.admin.ConfigEntry}; entry.source is the int of a
    ConfigSource. Raises KafkaException on a broker error."""
    admin = ck_admin(bootstrap)
    resource = ConfigResource(restype, name)
    futures = admin.describe_configs([resource], request_timeout=timeout)
    return futures[resource].result(timeout=timeout)


def ck_alter_configs(bootstrap: str, restype: ResourceType, name: str, changes: dict, timeout: float = 20.0) -> None:
    """IncrementalAlterConfigs of one resource; `changes` maps a config name
    to a value to SET, or to None to DELETE it. Raises KafkaException (its
    args[0] the KafkaError) when the broker refuses."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    entries = [
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE)
        for key, value in changes.items()
    ]
    admin = ck_admin(bootstrap)  # keep the handle alive until the result is in
    resource = ConfigResource(restype, name, incremental_configs=entries)
    futures = admin.incremental_alter_configs([resource], request_timeout=timeout)
    futures[resource].result(timeout=timeout)


def list_topic_names(bootstrap: str, timeout: float = 10.0) -> set:
    return set(ck_admin(bootstrap).list_topics(timeout=timeout).topics)


def ck_producer(bootstrap: str, **overrides) -> ck.Producer:
    """A librdkafka producer that Weir can serve (idempotence off)."""
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
        # Bounded delivery: anything not delivered by then is reported failed.
        "message.timeout.ms": 60000,
        "queue.buffering.max.messages": 1_000_000,
    }
    config.update(overrides)
    return ck.Producer(config)


@dataclasses.dataclass
class Delivery:
    """Outcome of one produced record, filled in by the delivery callback."""

    value: Optional[bytes]
    error: Optional[ck.KafkaError] = None
    partition: int = -1
    offset: int = -1
    done: bool = False


def ck_produce(
    producer: ck.Producer,
    topic: str,
    records: Iterable[dict],
    *,
    timeout: float = 120.0,
    flush_each: bool = False,
) -> list:
    """Produce `records` (dicts of produce() kwargs: key, value, partition,
    headers, timestamp) and flush. Returns one Delivery per record, in order.

    Does not assert success: callers decide what a failed delivery means.
    Raises AssertionError if the whole operation does not finish in `timeout`.
    """
    deadline = time.monotonic() + timeout
    deliveries: list = []

    def make_callback(d: Delivery):
        def on_delivery(err, msg):
            d.error = err
            if err is None:
                d.partition = msg.partition()
                d.offset = msg.offset()
            d.done = True

        return on_delivery

    for kwargs in records:
        d = Delivery(value=kwargs.get("value"))
        deliveries.append(d)
        while True:
            try:
                producer.produce(topic, on_delivery=make_callback(d), **kwargs)
                break
            except BufferError:
                # Local queue full: serve delivery reports, then retry.
                producer.poll(0.05)
                if time.monotonic() >= deadline:
                    raise AssertionError(f"producer queue stayed full for {timeout}s")
        producer.poll(0)
        if flush_each:
            _flush(producer, deadline)
    _flush(producer, deadline)
    undone = sum(1 for d in deliveries if not d.done)
    assert undone == 0, f"{undone} records got no delivery report"
    return deliveries


def _flush(producer: ck.Producer, deadline: float) -> None:
    remaining = producer.flush(max(0.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} records still queued when the produce deadline ran out"


def ck_consumer(bootstrap: str, **overrides) -> ck.Consumer:
    """A librdkafka consumer for assign()-only use (no group coordination)."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": UNUSED_GROUP_ID,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # Be strict by default: an out-of-range start offset is an error,
        # not a silent jump.
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    }
    config.update(overrides)
    return ck.Consumer(config)


def _ck_record(msg) -> Record:
    ts_type, ts = msg.timestamp()
    headers = tuple(msg.headers() or ())
    return Record(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        timestamp=ts,
        create_time=ts_type == ck.TIMESTAMP_CREATE_TIME,
        log_append_time=ts_type == ck.TIMESTAMP_LOG_APPEND_TIME,
    )


def ck_watermarks(bootstrap: str, topic: str, partition: int, timeout: float = 10.0) -> tuple:
    """(low, high) watermark offsets via ListOffsets (never from a cache)."""
    consumer = ck_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        consumer.close()


def ck_consume_partition(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int = 0,
    *,
    timeout: float = 60.0,
    max_records: Optional[int] = None,
    **consumer_overrides,
) -> list:
    """Consume one partition from `start` (an offset or ck.OFFSET_BEGINNING)
    up to its high watermark as of the call, and return the records.

    Stops at the end-of-partition event at or past that watermark (or after
    `max_records`). Non-retriable client errors raise immediately; retriable
    ones are tolerated until the deadline and then reported.
    """
    high = ck_watermarks(bootstrap, topic, partition)[1]
    consumer = ck_consumer(bootstrap, **consumer_overrides)
    records: list = []
    soft_errors: list = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([ck.TopicPartition(topic, partition, start)])
        next_offset = None
        while True:
            if max_records is not None and len(records) >= max_records:
                break
            if next_offset is not None and next_offset >= high:
                break
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"consuming {topic}[{partition}] from {start}: got {len(records)} records, "
                    f"next offset {next_offset}, high watermark {high} after {timeout}s; "
                    f"client errors: {soft_errors[-5:]}"
                )
            for msg in consumer.consume(num_messages=10000, timeout=0.5):
                err = msg.error()
                if err is None:
                    records.append(_ck_record(msg))
                    next_offset = msg.offset() + 1
                elif err.code() == ck.KafkaError._PARTITION_EOF:
                    next_offset = msg.offset()
                    if next_offset >= high:
                        break
                elif err.fatal() or not err.retriable():
                    raise ck.KafkaException(err)
                else:
                    soft_errors.append(err)
    finally:
        consumer.close()
    return records


def ck_produce_ok(bootstrap: str, topic: str, records: Iterable[dict], **producer_overrides) -> list:
    """ck_produce with a fresh producer; asserts that every record was delivered."""
    deliveries = ck_produce(ck_producer(bootstrap, **producer_overrides), topic, records)
    errors = [(i, d.error) for i, d in enumerate(deliveries) if d.error is not None]
    assert not errors, f"{len(errors)} of {len(deliveries)} records failed, e.g. {errors[:3]}"
    return deliveries


# ---------------------------------------------------------------------------
# confluent-kafka consumer groups
# ---------------------------------------------------------------------------


def ck_group_consumer(bootstrap: str, group: str, **overrides) -> ck.Consumer:
    """A librdkafka consumer for subscribe() in `group`: no auto commit
    (tests commit explicitly), reads from the start when nothing is
    committed, and notices rebalances and broker restarts quickly."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    }
    config.update(overrides)
    return ck.Consumer(config)


def ck_committed(bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 10.0) -> dict:
    """{partition: committed offset} of `group` for `topic` (OffsetFetch,
    without joining the group); ck.OFFSET_INVALID (-1001) where none."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([ck.TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
    finally:
        consumer.close()
    errors = [(tp.partition, tp.error) for tp in tps if tp.error is not None]
    assert not errors, f"OffsetFetch for group {group!r} failed: {errors}"
    return {tp.partition: tp.offset for tp in tps}


def ck_high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict:
    """{partition: high watermark} via ListOffsets."""
    return {p: ck_watermarks(bootstrap, topic, p)[1] for p in range(partitions)}


# ---------------------------------------------------------------------------
# kafka-python
# ---------------------------------------------------------------------------


def kp_admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=20000)


def kp_create_topic(bootstrap: str, topic: str, partitions: int, config: Optional[dict] = None) -> None:
    """Create a topic with kafka-python's KafkaAdminClient and wait for it."""
    admin = kp_admin(bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1, "configs": dict(config or {})}},
            timeout_ms=20000,
        )
    finally:
        admin.close()
    wait_for_topic(bootstrap, topic, partitions)


def kp_producer(bootstrap: str, **overrides):
    from kafka import KafkaProducer

    config = dict(
        bootstrap_servers=[bootstrap],
        # kafka-python >= 3 turns idempotence on by default; Weir has no
        # InitProducerId, so it must be off.
        enable_idempotence=False,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30000,
        max_block_ms=30000,
    )
    config.update(overrides)
    return KafkaProducer(**config)


def kp_consumer(bootstrap: str, **overrides):
    from kafka import KafkaConsumer

    config = dict(
        bootstrap_servers=[bootstrap],
        group_id=None,  # no group: assign() only, nothing is ever committed
        enable_auto_commit=False,
        auto_offset_reset="none",  # strict: out of range is an error
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )
    config.update(overrides)
    return KafkaConsumer(**config)


def kp_consume_partition(
    bootstrap: str, topic: str, partition: int, start: int = 0, *, timeout: float = 120.0
) -> list:
    """kafka-python counterpart of ck_consume_partition (start is an offset)."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = kp_consumer(bootstrap)
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([tp])
        high = consumer.end_offsets([tp], timeout_ms=20000)[tp]
        consumer.seek(tp, start)
        next_offset = start
        while next_offset < high:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"kafka-python consuming {topic}[{partition}]: got {len(records)} records, "
                    f"next offset {next_offset}, high watermark {high} after {timeout}s"
                )
            batch = consumer.poll(timeout_ms=500, max_records=10000)
            for msg in batch.get(tp, []):
                records.append(
                    Record(
                        topic=msg.topic,
                        partition=msg.partition,
                        offset=msg.offset,
                        key=msg.key,
                        value=msg.value,
                        headers=tuple(msg.headers or ()),
                        timestamp=msg.timestamp,
                        create_time=msg.timestamp_type == 0,
                        log_append_time=msg.timestamp_type == 1,
                    )
                )
                next_offset = msg.offset + 1
    finally:
        consumer.close(autocommit=False)
    return records


def kp_beginning_end_offsets(bootstrap: str, topic: str, partition: int) -> tuple:
    """(beginning, end) offsets as kafka-python sees them (ListOffsets)."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = kp_consumer(bootstrap)
    try:
        begin = consumer.beginning_offsets([tp], timeout_ms=20000)[tp]
        end = consumer.end_offsets([tp], timeout_ms=20000)[tp]
        return begin, end
    finally:
        consumer.close(autocommit=False)


class KpDeliveries:
    """Thread-safe collector for kafka-python send() futures' outcomes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok: dict = {}  # id -> (partition, offset)
        self.failed: dict = {}  # id -> exception

    def track(self, future, record_id) -> None:
        def ok(metadata):
            with self._lock:
                self.ok[record_id] = (metadata.partition, metadata.offset)

        def failed(exc):
            with self._lock:
                self.failed[record_id] = exc

        future.add_callback(ok)
        future.add_errback(failed)


# ---------------------------------------------------------------------------
# The weir CLI
# ---------------------------------------------------------------------------


def run_cli(
    binary: str,
    *args: str,
    input: Optional[str] = None,
    timeout: float = 60.0,
    env: Optional[dict] = None,
) -> subprocess.CompletedProcess:
    """Run `weir ARGS...` (text mode, stdin from `input` or /dev/null), bounded in time."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    full_env.update(env or {})
    return subprocess.run(
        [binary, *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def describe_process(result: subprocess.CompletedProcess) -> str:
    """A readable summary of a finished command for assertion messages."""
    return (
        f"command: {result.args!r}\nexit code: {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def run_weir(binary: str, bootstrap: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `weir ARGS... --bootstrap BOOTSTRAP` (the CLI takes --bootstrap last)."""
    return run_cli(binary, *args, "--bootstrap", bootstrap, **kwargs)


# Columns of `weir group describe` (as kafka-consumer-groups.sh --describe).
GROUP_DESCRIBE_COLUMNS = (
    "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID",
)  # fmt: skip


def parse_group_describe(text: str, group: str) -> list:
    """The partition rows of a `weir group describe` table, as dicts keyed by
    GROUP_DESCRIBE_COLUMNS. Numbers become ints; "-" (or a missing trailing
    cell) becomes None. Lines that are not rows of `group` (notes, blank
    lines, the header) are ignored. Asserts that the header is there."""
    lines = text.splitlines()
    header_at = next(
        (i for i, line in enumerate(lines) if all(col in line.split() for col in GROUP_DESCRIBE_COLUMNS)),
        None,
    )
    assert header_at is not None, f"no header with columns {' '.join(GROUP_DESCRIBE_COLUMNS)} in:\n{text}"
    header = lines[header_at].split()
    rows = []
    for line in lines[header_at + 1 :]:
        cells = line.split()
        if len(cells) < 6 or cells[header.index("GROUP")] != group:
            continue
        row = {}
        for i, col in enumerate(header):
            cell = cells[i] if i < len(cells) else "-"
            if cell == "-":
                row[col] = None
            elif col in ("PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"):
                row[col] = int(cell)
            else:
                row[col] = cell
        rows.append(row)
    return rows
