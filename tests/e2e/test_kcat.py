"""kcat (Debian's /usr/bin/kcat, librdkafka 2.0.2) against Weir.

kcat is a separate librdkafka build from the one in the confluent-kafka
wheel, and it is what people reach for first, so it gets its own checks:
keys, values, headers and timestamps must survive a produce/consume round
trip, and kcat must read timestamps written by another client and seek by
timestamp.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from helpers import ck_consume_partition, ck_produce, ck_producer, create_topic, now_ms

KCAT = shutil.which("kcat") or "/usr/bin/kcat"

# Separators for kcat's -f output. Raw control characters are passed as-is
# (kcat copies non-% characters verbatim), so they cannot clash with values.
FS = "\x1f"  # between fields
RS = "\n"  # after each record
# partition, offset, timestamp, key, headers, value-length, value
FORMAT = FS.join(["%p", "%o", "%T", "%k", "%h", "%S", "%s"]) + RS

def kcat(*args: str, input: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run kcat, bounded in time; stdin is `input` or /dev/null."""
    return subprocess.run(
        [KCAT, *args],
        input=input.encode() if input is not None else None,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def check(result: subprocess.CompletedProcess) -> str:
    """Assert kcat succeeded and return its stdout as text."""
    stdout = result.stdout.decode("utf-8", errors="replace")
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == 0, f"kcat {result.args[1:]} exited {result.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return stdout


def parse_formatted(stdout: str) -> list:
    """Parse FORMAT output into dicts."""
    rows = []
    for line in stdout.split(RS):
        if not line:
            continue
        fields = line.split(FS)
        assert len(fields) == 7, f"unexpected kcat output line: {line!r}"
        partition, offset, ts, key, headers, length, value = fields
        rows.append(
            dict(
                partition=int(partition),
                offset=int(offset),
                timestamp=int(ts),
                key=key,
                headers=headers,
                length=int(length),
                value=value,
            )
        )
    return rows


def test_kcat_roundtrip_keys_values_headers_timestamps(broker):
    topic = "kcat-roundtrip"
    create_topic(broker.bootstrap, topic, partitions=2)

    # kcat's metadata listing sees the topic and its partitions.
    listing = check(kcat("-b", broker.bootstrap, "-L", "-t", topic))
    assert f'topic "{topic}" with 2 partitions' in listing, listing

    # Two batches of keyed records, each to an explicit partition with its
    # own headers. Values include non-ASCII text, spaces and a tab.
    batches = {
        0: dict(
            headers=[("trace", "abc-123"), ("source", "kcat-e2e")],
            records=[(f"key-{i}", f"value {i} \u00fcn\u00efc\u00f8d\u00e9 \u2713\twith tab") for i in range(25)],
        ),
        1: dict(
            headers=[("trace", "xyz-789")],
            records=[(f"other-{i}", f"second partition value #{i}") for i in range(17)],
        ),
    }
    t_before = now_ms()
    for partition, batch in batches.items():
        lines = "".join(f"{k}:{v}\n" for k, v in batch["records"])
        header_args = [arg for name, val in batch["headers"] for arg in ("-H", f"{name}={val}")]
        result = kcat(
            "-b", broker.bootstrap, "-P", "-t", topic, "-p", str(partition), "-K:",
            *header_args,
            "-X", "enable.idempotence=false",
            input=lines,
        )  # fmt: skip
        check(result)
        assert b"Delivery failed" not in result.stderr, result.stderr
    t_after = now_ms()

    # Consume everything back with kcat (legacy assign-style consumer, no group).
    out = check(kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT))
    rows = parse_formatted(out)
    assert len(rows) == sum(len(b["records"]) for b in batches.values()), out

    for partition, batch in batches.items():
        got = [r for r in rows if r["partition"] == partition]
        expected_headers = ",".join(f"{n}={v}" for n, v in batch["headers"])
        assert [r["offset"] for r in got] == list(range(len(batch["records"]))), "offsets must be dense from 0"
        assert [(r["key"], r["value"]) for r in got] == batch["records"]
        assert [r["length"] for r in got] == [len(v.encode()) for _, v in batch["records"]]
        for r in got:
            assert r["headers"] == expected_headers, r
            # kcat cannot set explicit timestamps, so the producer stamped
            # each record with its wall clock while kcat ran.
            assert t_before <= r["timestamp"] <= t_after, (r, t_before, t_after)

    # The JSON envelope tells the timestamp type: the producer's CreateTime
    # must be kept, not replaced by a broker LogAppendTime.
    out = check(kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"))
    envelopes = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(envelopes) == len(rows)
    by_pos = {(r["partition"], r["offset"]): r for r in rows}
    for env in envelopes:
        row = by_pos[(env["partition"], env["offset"])]
        assert env["tstype"] == "create", env
        assert env["ts"] == row["timestamp"], env
        assert env["key"] == row["key"], env

    # A different client (confluent-kafka) sees the same headers as raw bytes.
    for partition, batch in batches.items():
        records = ck_consume_partition(broker.bootstrap, topic, partition)
        want = tuple((n, v.encode()) for n, v in batch["headers"])
        assert [r.headers for r in records] == [want] * len(batch["records"])
        assert [(r.key.decode(), r.value.decode()) for r in records] == batch["records"]


def test_kcat_reads_explicit_timestamps_and_seeks_by_time(broker):
    topic = "kcat-timestamps"
    create_topic(broker.bootstrap, topic, partitions=1)

    # An hour in the past (well inside the default retention), 1 s apart.
    base = now_ms() - 3_600_000
    stamps = [base + i * 1000 for i in range(10)]
    producer = ck_producer(broker.bootstrap)
    deliveries = ck_produce(
        producer,
        topic,
        [dict(value=f"ts-record-{i}".encode(), timestamp=ts, partition=0) for i, ts in enumerate(stamps)],
    )
    assert [d.error for d in deliveries] == [None] * len(stamps)

    out = check(kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT))
    rows = parse_formatted(out)
    assert [r["offset"] for r in rows] == list(range(10))
    assert [r["timestamp"] for r in rows] == stamps
    assert [r["value"] for r in rows] == [f"ts-record-{i}" for i in range(10)]

    # Seek by timestamp (ListOffsets with a timestamp): the first record at
    # or after base+4500 is offset 5.
    out = check(
        kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", f"s@{base + 4500}", "-e", "-q", "-f", FORMAT)
    )
    rows = parse_formatted(out)
    assert [r["offset"] for r in rows] == [5, 6, 7, 8, 9], out
    assert [r["timestamp"] for r in rows] == stamps[5:]
