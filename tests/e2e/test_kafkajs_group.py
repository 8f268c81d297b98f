"""kafkajs (a pure JavaScript Kafka client, a third protocol implementation)
against Weir: a consumer group across rebalances, and GZIP batches.

The checks themselves run in Node (tests/e2e/js/*.js, see their headers);
this file starts the broker, runs a script with a bounded time, and then
checks its effect with other clients and the `weir` CLI. scripts/test
installs the scripts' dependencies (kafkajs, pinned in
tests/e2e/js/package-lock.json) into tests/e2e/js/node_modules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import (
    FAST_GROUPS,
    ck_committed,
    ck_consume_partition,
    ck_high_watermarks,
    create_topic,
    describe_process,
    kp_consume_partition,
    parse_group_describe,
    run_weir,
    wait_for_topic,
)
from kafka_wire import fetch_batches

JS_DIR = Path(__file__).resolve().parent / "js"


def run_node(script: str, *args: str, timeout: float) -> dict:
    """Run `node js/SCRIPT ARGS...` and return the JSON summary it prints.

    The script's stderr (its progress log and kafkajs warnings) is printed,
    so it appears in pytest's report when the test fails."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (scripts/test --setup-only installs it)", pytrace=False)
    if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").is_file():
        pytest.fail(f"kafkajs is not installed in {JS_DIR}/node_modules (run scripts/test --setup-only)", pytrace=False)
    try:
        result = subprocess.run(
            [node, str(JS_DIR / script), *args],
            cwd=JS_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        print(f"--- {script} stderr ---\n{stderr}")
        raise AssertionError(f"{script} did not finish within {timeout}s") from None
    print(f"--- {script} stderr ---\n{result.stderr}")
    assert result.returncode == 0, f"{script} failed\n" + describe_process(result)
    lines = result.stdout.strip().splitlines()
    assert lines, f"{script} printed no summary\n" + describe_process(result)
    summary = json.loads(lines[-1])
    print(f"--- {script} summary ---\n{json.dumps(summary, indent=1)}")
    return summary


PARTITIONS = 6


@pytest.mark.timeout(240)
def test_kafkajs_group_survives_member_leaving_and_joining(weir_bin, start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = "kafkajs-group", "kafkajs-group-members"

    # The script creates the topic, runs three consumers, stops one, adds
    # another, and checks that every id was consumed and the lag is 0.
    summary = run_node("group_test.js", broker.bootstrap, topic, group, timeout=180)
    assert summary["unique"] == summary["produced"] == 3000, summary
    names = {m["name"]: m for m in summary["members"]}
    assert set(names) == {"c1", "c2", "c3", "c4"}
    # The survivors went through the rebalances: c1 and c3 joined at least
    # three times (start, c2 leaving, c4 joining).
    assert names["c1"]["joins"] >= 3 and names["c3"]["joins"] >= 3, summary["members"]

    # librdkafka sees the same committed offsets: the end of every partition.
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)
    highs = ck_high_watermarks(broker.bootstrap, topic, PARTITIONS)
    assert sum(highs.values()) == 3000, highs
    assert ck_committed(broker.bootstrap, group, topic, PARTITIONS) == highs

    # So does `weir group describe`: every partition, lag 0, no members left.
    result = run_weir(weir_bin, broker.bootstrap, "group", "describe", group)
    assert result.returncode == 0, describe_process(result)
    rows = [r for r in parse_group_describe(result.stdout, group) if r["TOPIC"] == topic]
    assert sorted(r["PARTITION"] for r in rows) == list(range(PARTITIONS)), result.stdout
    for row in rows:
        p = row["PARTITION"]
        assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == (highs[p], highs[p], 0), (
            f"partition {p}: {row}\n{result.stdout}"
        )
        assert row["CONSUMER-ID"] is None, f"the group is empty, yet partition {p} shows a consumer: {row}"

    result = run_weir(weir_bin, broker.bootstrap, "group", "list")
    assert result.returncode == 0, describe_process(result)
    assert group in result.stdout.split(), result.stdout


def expected_js_record(i: int) -> tuple:
    """Record i as compression_test.js writes it: (key, value, headers)."""
    return (b"key-%d" % i, b"value-%d-" % i + b"abc" * (i % 50), (("h", b"hv-%d" % i),))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "codec",
    [
        "gzip",
        *(
            pytest.param(
                codec,
                marks=pytest.mark.skip(
                    reason=f"kafkajs has GZIP built in only; {codec} needs a codec plugin package, "
                    "not installed (librdkafka and kafka-python cover it in test_compression.py)"
                ),
            )
            for codec in ("snappy", "lz4", "zstd")
        ),
    ],
)
def test_kafkajs_compressed_batch_roundtrip(start_broker, codec):
    broker = start_broker(env=FAST_GROUPS)
    topic, count = f"kafkajs-{codec}", 500
    create_topic(broker.bootstrap, topic, 1)

    # kafkajs produces one compressed batch and reads it back (byte-exact).
    summary = run_node("compression_test.js", broker.bootstrap, topic, str(count), timeout=90)
    assert summary["count"] == count

    # Weir stores and serves the batch as kafkajs sent it: compressed.
    error, high, batches = fetch_batches("127.0.0.1", broker.port, topic, 0)
    assert error == 0 and high == count
    assert [b.codec for b in batches] == [codec], [(b.base_offset, b.codec, b.record_count) for b in batches]
    assert batches[0].record_count == count

    # Other clients decompress it to the same records.
    expected = [expected_js_record(i) for i in range(count)]
    records = ck_consume_partition(broker.bootstrap, topic, 0)
    assert [(r.key, r.value, r.headers) for r in records] == expected
    assert [r.offset for r in records] == list(range(count))
    records = kp_consume_partition(broker.bootstrap, topic, 0)
    assert [(r.key, r.value, tuple(r.headers)) for r in records] == expected
