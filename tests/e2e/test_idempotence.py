"""Idempotent producers: a retried batch is appended once.

A small TCP proxy sits between an idempotent confluent-kafka producer
(enable.idempotence=true, acks=all) and Weir. Weir is started with
`--advertised 127.0.0.1:PROXYPORT`, so the metadata it returns keeps the
client on the proxy. The proxy forwards frames unchanged, remembering which
api key each client request had (by correlation id); the first Produce
response it sees is dropped and the client connection closed. The batch was
appended, but the producer never heard so: librdkafka reconnects and sends
the same batch again with the same producer id, epoch and sequence, and the
broker must answer with success (and the original offset) without appending
it a second time.

The proxy also decodes each Produce request's batches (kafka_wire), so the
test can prove that the retry really was the same batch.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import confluent_kafka as ck
import pytest

from helpers import (
    ck_consume_partition,
    ck_produce,
    ck_producer,
    create_topic,
    kp_producer,
    KpDeliveries,
    wait_until,
)
from kafka_wire import (
    API_PRODUCE,
    api_versions,
    fetch_batches,
    parse_produce_request,
    parse_request_header,
    recv_frame,
    response_correlation_id,
)


class DroppingProxy:
    """Forwards Kafka connections from its own port to the broker's; can
    drop the next Produce response (and close that client connection), and
    hold back new upstream connections until released."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.target_port: int | None = None
        self.lock = threading.Lock()
        self.armed = False
        self.hold_after_drop = False
        self.upstream_open = threading.Event()
        self.upstream_open.set()
        self.dropped = threading.Event()
        self.dropped_batches: list = []  # ProducedBatch of the produce whose response was dropped
        self.produced: list = []  # (monotonic time, ProducedBatch) of every Produce request, in order
        self.drop_time: float | None = None
        self.errors: list = []
        self.sockets: list = []
        self.closed = False

    # -- control -----------------------------------------------------------

    def start(self, target_port: int) -> None:
        self.target_port = target_port
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()

    def arm(self, hold_after_drop: bool = False) -> None:
        """Drop the next Produce response; with hold_after_drop, new client
        connections then wait for release() before reaching the broker."""
        with self.lock:
            self.armed = True
            self.hold_after_drop = hold_after_drop

    def release(self) -> None:
        self.upstream_open.set()

    def close(self) -> None:
        self.closed = True
        self.upstream_open.set()
        for s in [self.listener, *self.sockets]:
            try:
                s.close()
            except OSError:
                pass

    # -- forwarding --------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True).start()

    @staticmethod
    def _shut(*socks) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _serve(self, client: socket.socket) -> None:
        if not self.upstream_open.wait(timeout=60):
            self.errors.append("a client connection waited 60 s for release()")
            self._shut(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            upstream.settimeout(None)
        except OSError as exc:
            # Broker not there (e.g. restarting): the client sees a closed
            # connection and reconnects, as it would without the proxy.
            self._shut(client)
            return
        self.sockets.append(upstream)
        requests: dict = {}  # correlation id -> (api key, [ProducedBatch])

        def pump_requests() -> None:
            try:
                while True:
                    frame = recv_frame(client)
                    if frame is None:
                        break
                    header = parse_request_header(frame)
                    batches = []
                    if header.api_key == API_PRODUCE:
                        try:
                            batches = parse_produce_request(frame)
                        except Exception as exc:  # noqa: BLE001 - reported by the test
                            self.errors.append(f"could not parse a Produce v{header.api_version} request: {exc!r}")
                        now = time.monotonic()
                        with self.lock:
                            self.produced.extend((now, b) for b in batches)
                    with self.lock:
                        requests[header.correlation_id] = (header.api_key, batches)
                    upstream.sendall(frame)
            except OSError:
                pass
            finally:
                self._shut(client, upstream)

        threading.Thread(target=pump_requests, name="proxy-requests", daemon=True).start()
        try:
            while True:
                frame = recv_frame(upstream)
                if frame is None:
                    break
                with self.lock:
                    api_key, batches = requests.pop(response_correlation_id(frame), (None, []))
                    drop = api_key == API_PRODUCE and self.armed
                    if drop:
                        self.armed = False
                        self.dropped_batches = batches
                        self.drop_time = time.monotonic()
                        if self.hold_after_drop:
                            self.upstream_open.clear()
                if drop:
                    # The broker has appended the batch; the client never
                    # hears so and sees its connection close.
                    self.dropped.set()
                    break
                client.sendall(frame)
        except OSError:
            pass
        finally:
            self._shut(client, upstream)


@pytest.fixture
def proxied_broker(start_broker):
    """(broker, proxy): Weir advertising the proxy's port, the proxy forwarding to Weir."""
    proxy = DroppingProxy()
    broker = start_broker(args=["--advertised", f"127.0.0.1:{proxy.port}"])
    proxy.start(broker.port)
    yield broker, proxy
    proxy.close()


PARTITIONS = 3
COUNT = 300


def idempotent_producer(bootstrap: str) -> ck.Producer:
    return ck_producer(
        bootstrap,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "message.timeout.ms": 60000,
            # One broker at a fixed address: reconnect, do not re-bootstrap.
            "metadata.recovery.strategy": "none",
        },
    )


def check_exactly_once(broker, topic: str, deliveries: list, values: list) -> None:
    """Every delivery succeeded; each value is in the log once, at the offset
    its delivery report named; raw batches carry one producer id and no
    (producer, sequence) twice."""
    failed = [(d.value, d.error) for d in deliveries if d.error is not None]
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    where: dict = {}
    copies: Counter = Counter()
    for p in range(PARTITIONS):
        for r in ck_consume_partition(broker.bootstrap, topic, p):
            copies[r.value] += 1
            where[r.value] = (p, r.offset)
    duplicated = {v: n for v, n in copies.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} values stored more than once, e.g. {list(duplicated.items())[:5]}"
    assert set(copies) == set(values), f"log has {len(copies)} distinct values, produced {len(values)}"
    moved = [(d.value, (d.partition, d.offset), where[d.value]) for d in deliveries if (d.partition, d.offset) != where[d.value]]
    assert not moved, f"delivery reports name other offsets than the log has, e.g. {moved[:5]}"

    producer_ids = set()
    for p in range(PARTITIONS):
        error, _, batches = fetch_batches("127.0.0.1", broker.port, topic, p)
        assert error == 0
        seqs = Counter((b.producer_id, b.producer_epoch, b.base_sequence) for b in batches)
        assert all(n == 1 for n in seqs.values()), f"partition {p}: a (producer, epoch, sequence) stored twice: {seqs}"
        producer_ids.update(b.producer_id for b in batches)
    assert len(producer_ids) == 1 and min(producer_ids) >= 0, f"batches carry producer ids {producer_ids}"


def check_retried_same_batch(proxy: DroppingProxy) -> None:
    """The dropped Produce's batches were sent again after the drop, with the
    same producer id, epoch and sequence."""
    assert not proxy.errors, proxy.errors
    assert proxy.dropped_batches, "the dropped Produce request carried no batch the proxy could decode"
    with proxy.lock:
        later = [b for t, b in proxy.produced if t > proxy.drop_time]
    for d in proxy.dropped_batches:
        assert d.batch.producer_id >= 0, f"the producer is not idempotent: batch without producer id: {d}"
        same = [
            b
            for b in later
            if (b.topic, b.partition, b.batch.producer_id, b.batch.producer_epoch, b.batch.base_sequence)
            == (d.topic, d.partition, d.batch.producer_id, d.batch.producer_epoch, d.batch.base_sequence)
        ]
        assert same, (
            f"the batch {d.topic}/{d.partition} seq {d.batch.base_sequence} whose response was dropped was not "
            f"sent again with the same sequence; later batches: "
            f"{[(b.topic, b.partition, b.batch.producer_id, b.batch.base_sequence) for b in later][:10]}"
        )
        assert same[0].batch.record_count == d.batch.record_count


@pytest.mark.timeout(120)
def test_batch_retried_after_lost_response_is_appended_once(proxied_broker):
    broker, proxy = proxied_broker
    topic = "idempotent-retry"
    create_topic(broker.bootstrap, topic, PARTITIONS)

    proxy.arm()
    producer = idempotent_producer(f"127.0.0.1:{proxy.port}")
    values = [b"value-%d" % i for i in range(COUNT)]
    deliveries = ck_produce(producer, topic, [dict(key=b"k%d" % i, value=v) for i, v in enumerate(values)], timeout=90)
    assert proxy.dropped.is_set(), "the proxy never saw a Produce response (is Weir advertising the proxy port?)"

    check_retried_same_batch(proxy)
    check_exactly_once(broker, topic, deliveries, values)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_retry_after_broker_restart_is_deduplicated(proxied_broker, how):
    """The response is lost, the broker restarts, and only then does the
    retry arrive: the producer state (last sequences) must be recovered
    from the log."""
    broker, proxy = proxied_broker
    topic = f"idempotent-restart-{how}"
    create_topic(broker.bootstrap, topic, PARTITIONS)

    proxy.arm(hold_after_drop=True)
    producer = idempotent_producer(f"127.0.0.1:{proxy.port}")
    values = [b"value-%d" % i for i in range(COUNT)]
    result: dict = {}

    def produce() -> None:
        try:
            result["deliveries"] = ck_produce(
                producer, topic, [dict(key=b"k%d" % i, value=v) for i, v in enumerate(values)], timeout=90
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=produce, name="producer", daemon=True)
    thread.start()
    assert proxy.dropped.wait(timeout=30), "the proxy never saw a Produce response"
    # The client is now cut off (new connections are held at the proxy);
    # restart the broker before letting the retry through.
    if how == "sigkill":
        broker.kill9()
        broker.start()
    else:
        broker.restart()
    proxy.release()
    thread.join(timeout=100)
    assert not thread.is_alive(), "producing did not finish"
    if "error" in result:
        raise result["error"]

    check_retried_same_batch(proxy)
    check_exactly_once(broker, topic, result["deliveries"], values)


@pytest.mark.timeout(60)
def test_kafka_python_idempotent_producers_get_distinct_ids(broker):
    """kafka-python >= 3 is idempotent by default (InitProducerId); two
    producers get different producer ids and their records land once."""
    topic = "kafka-python-idempotent"
    create_topic(broker.bootstrap, topic, 1)
    deliveries = KpDeliveries()
    for n in range(2):
        producer = kp_producer(broker.bootstrap, enable_idempotence=True)
        for i in range(100):
            record_id = n * 100 + i
            deliveries.track(producer.send(topic, value=b"%d" % record_id, partition=0), record_id)
        producer.flush(timeout=30)
        producer.close(timeout=10)
    assert not deliveries.failed, list(deliveries.failed.items())[:3]
    assert len(deliveries.ok) == 200

    records = ck_consume_partition(broker.bootstrap, topic, 0)
    assert sorted(int(r.value) for r in records) == list(range(200))
    _, _, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    ids = {b.producer_id for b in batches}
    assert len(ids) == 2 and min(ids) >= 0, f"producer ids in the batches: {ids}"


# Transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, WriteTxnMarkers, TxnOffsetCommit.
TXN_API_KEYS = {24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers", 28: "TxnOffsetCommit"}


@pytest.mark.timeout(60)
def test_transactions_are_not_offered(broker):
    """Transactions are not supported: ApiVersions offers none of their APIs
    (while it does offer InitProducerId for idempotence), and a transactional
    librdkafka producer's init_transactions fails instead of succeeding.

    Weir answers FindCoordinator for the transactional id, then refuses the
    transactional InitProducerId with UNSUPPORTED_VERSION, which is the error the
    client reports (librdkafka keeps retrying until the call's timeout, then
    returns that last error)."""
    versions = api_versions("127.0.0.1", broker.port)
    assert 22 in versions, f"InitProducerId (22) must be offered for idempotent producers: {sorted(versions)}"
    offered = {name for key, name in TXN_API_KEYS.items() if key in versions}
    assert not offered, f"transaction APIs offered although not supported: {offered}"

    producer = ck.Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "weir-e2e-txn"})
    started = time.monotonic()
    with pytest.raises(ck.KafkaException) as excinfo:
        producer.init_transactions(5)
    print(f"init_transactions failed after {time.monotonic() - started:.1f}s with {excinfo.value!r}")
    assert excinfo.value.args[0].code() == ck.KafkaError.UNSUPPORTED_VERSION, excinfo.value
