"""Compressed record batches (gzip, snappy, lz4, zstd) through Weir.

Weir stores batches as the producer sent them and serves them unchanged,
so a compressed batch must come back compressed with the same codec (seen
with a raw Fetch, kafka_wire.fetch_batches), take about its compressed size
on disk, and decompress in any client to exactly the records produced.

Producers: librdkafka (confluent-kafka `compression.type`), kafka-python
(`compression_type`; snappy, lz4 and zstd need python-snappy, lz4 and
zstandard, which requirements.txt installs) and `weir produce --compression`.
Every log is read back with both confluent-kafka and kafka-python.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from helpers import (
    KpDeliveries,
    ck_consume_partition,
    ck_produce_ok,
    create_topic,
    describe_process,
    kp_consume_partition,
    kp_producer,
    run_weir,
)
from kafka_wire import fetch_batches

CODECS = ["gzip", "snappy", "lz4", "zstd"]
COUNT = 2000


def make_records(count: int, seed: int) -> list:
    """(key, value, headers) with the awkward cases mixed in: no key, null
    and empty values, incompressible binary values, headers or none. Most
    values are repetitive text, so batches compress well."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        key = None if i % 7 == 0 else b"key-%d" % (i % 50)
        if i % 13 == 0 and key is not None:
            value = None
        elif i % 17 == 0:
            value = b""
        elif i % 5 == 0:
            value = rng.randbytes(rng.randrange(1, 300))
        else:
            value = b"record %06d " % i + b"lorem ipsum dolor sit amet " * rng.randrange(5, 30)
        headers = (("trace", b"t-%d" % i), ("empty", b"")) if i % 3 == 0 else ()
        records.append((key, value, headers))
    return records


def raw_size(records: list) -> int:
    return sum(len(k or b"") + len(v or b"") + sum(len(n) + len(hv) for n, hv in h) for k, v, h in records)


def log_bytes_on_disk(data_dir: Path, topic: str) -> int:
    """Bytes in the topic's *.log segment files under the broker's data dir."""
    files = [p for p in data_dir.rglob("*.log") if topic in p.parts]
    assert files, f"no *.log segment files for {topic} under {data_dir}"
    return sum(p.stat().st_size for p in files)


def check_log(broker, topic: str, records: list, codecs: list) -> None:
    """Partition 0 of `topic` holds exactly `records` in order, in batches
    whose codecs (in order, repeats collapsed) are `codecs`, for both clients."""
    for client, read in (("confluent-kafka", ck_consume_partition), ("kafka-python", kp_consume_partition)):
        got = read(broker.bootstrap, topic, 0)
        assert [r.offset for r in got] == list(range(len(records))), f"{client}: offsets are not 0..{len(records) - 1}"
        have = [(r.key, r.value, tuple(r.headers)) for r in got]
        mismatch = [(i, want, had) for i, (want, had) in enumerate(zip(records, have)) if want != had]
        assert not mismatch, f"{client} read {len(mismatch)} records differently, e.g. (offset, want, got) {mismatch[:2]}"

    error, high, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    assert error == 0 and high == len(records)
    assert sum(b.record_count for b in batches) == len(records)
    seen = []
    for b in batches:
        if not seen or seen[-1] != b.codec:
            seen.append(b.codec)
    assert seen == codecs, f"batches served with codecs {[(b.base_offset, b.codec, b.record_count) for b in batches]}"


def check_compact(broker, topic: str, records: list) -> None:
    """Compressible data stays compressed, as served and as stored."""
    raw = raw_size(records)
    _, _, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    served = sum(len(b.raw) for b in batches)
    stored = log_bytes_on_disk(broker.data_dir, topic)
    print(f"{topic}: {raw} bytes of keys/values/headers, {served} bytes served, {stored} bytes stored")
    assert served < raw / 3, f"served {served} bytes for {raw} bytes of records: not compressed?"
    assert stored < raw / 3, f"stored {stored} bytes for {raw} bytes of records: not compressed?"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_compressed_batches_roundtrip(broker, codec):
    topic = f"ck-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    records = make_records(COUNT, seed=CODECS.index(codec))
    ck_produce_ok(
        broker.bootstrap,
        topic,
        [dict(key=k, value=v, headers=list(h) or None, partition=0) for k, v, h in records],
        **{"compression.type": codec, "linger.ms": 50, "batch.size": 256 * 1024},
    )
    check_log(broker, topic, records, [codec])
    check_compact(broker, topic, records)


def kafka_python_has(codec: str) -> bool:
    from kafka import codec as kc

    return {"gzip": kc.has_gzip, "snappy": kc.has_snappy, "lz4": kc.has_lz4, "zstd": kc.has_zstd}[codec]()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compressed_batches_roundtrip(broker, codec):
    if not kafka_python_has(codec):
        pytest.skip(f"kafka-python has no {codec} codec installed (see requirements.txt)")
    topic = f"kp-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    records = make_records(COUNT, seed=10 + CODECS.index(codec))
    producer = kp_producer(broker.bootstrap, compression_type=codec, linger_ms=50, batch_size=256 * 1024)
    deliveries = KpDeliveries()
    for i, (k, v, h) in enumerate(records):
        deliveries.track(producer.send(topic, key=k, value=v, headers=list(h), partition=0), i)
    producer.flush(timeout=60)
    producer.close(timeout=10)
    assert not deliveries.failed, list(deliveries.failed.items())[:3]
    assert sorted(deliveries.ok) == list(range(COUNT))
    check_log(broker, topic, records, [codec])
    check_compact(broker, topic, records)


@pytest.mark.timeout(120)
def test_codecs_mixed_in_one_partition(broker):
    """Batches of every codec (and uncompressed) one after another in one
    partition are served in order, each with its own codec."""
    topic = "mixed-codecs"
    create_topic(broker.bootstrap, topic, 1)
    records, codecs = [], []
    for n, codec in enumerate(["none", *CODECS, "gzip", "none"]):
        chunk = make_records(100, seed=100 + n)
        if n % 2:
            ck_produce_ok(
                broker.bootstrap,
                topic,
                [dict(key=k, value=v, headers=list(h) or None, partition=0) for k, v, h in chunk],
                **{"compression.type": codec, "linger.ms": 50},
            )
        else:
            producer = kp_producer(
                broker.bootstrap,
                compression_type=None if codec == "none" else codec,
                linger_ms=50,
            )
            futures = [producer.send(topic, key=k, value=v, headers=list(h), partition=0) for k, v, h in chunk]
            producer.flush(timeout=30)
            producer.close(timeout=10)
            for f in futures:
                f.get(timeout=10)
        records += chunk
        codecs.append(codec)
    check_log(broker, topic, records, codecs)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("codec", CODECS)
def test_weir_produce_compression(weir_bin, broker, codec):
    topic = f"cli-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    lines = [f"line {i}" + " compressible text" * (i % 20) for i in range(1000)]
    result = run_weir(weir_bin, broker.bootstrap, "produce", topic, "--partition", "0", "--compression", codec,
                      input="".join(line + "\n" for line in lines))  # fmt: skip
    assert result.returncode == 0, describe_process(result)
    check_log(broker, topic, [(None, line.encode(), ()) for line in lines], [codec])
