"""The `weir` command-line client against a running broker.

The CLI's output layout is not pinned down here: topic names and record
values must appear in its output, and everything else about the effect of
a command is checked through confluent-kafka. Failures must give a
non-zero exit code and a message on stderr.
"""

from __future__ import annotations

import re

from helpers import (
    free_port,
    ck_consume_partition,
    ck_produce,
    ck_producer,
    ck_watermarks,
    describe_process,
    describe_topic_config,
    list_topic_names,
    now_ms,
    run_cli,
    wait_for_topic,
    wait_until,
)


def weir(weir_bin: str, broker, *args: str, **kwargs):
    """Run a CLI command against `broker` (--bootstrap goes last)."""
    return run_cli(weir_bin, *args, "--bootstrap", broker.bootstrap, **kwargs)


def ok(result) -> str:
    assert result.returncode == 0, describe_process(result)
    return result.stdout


def failed(result) -> str:
    assert result.returncode != 0, "expected a failure\n" + describe_process(result)
    assert result.stderr.strip(), "a failing command must explain itself on stderr\n" + describe_process(result)
    return result.stderr


def mentions(text: str, word: str) -> bool:
    """`word` appears in `text` as a whole token (not inside a longer name)."""
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w.-])", text) is not None


def in_order(text: str, values: list) -> bool:
    """Every value appears in `text`, in the given order."""
    pos = 0
    for value in values:
        pos = text.find(value, pos)
        if pos < 0:
            return False
        pos += len(value)
    return True


def test_topic_create_list_describe_delete(weir_bin, broker):
    name, other = "cli-topic", "cli-topic-other"
    ok(weir(weir_bin, broker, "topic", "create", name, "--partitions", "3",
            "--config", "retention.ms=123456", "--config", "cleanup.policy=delete"))  # fmt: skip
    ok(weir(weir_bin, broker, "topic", "create", other, "--partitions", "1"))

    # The broker has the topic with the requested partitions and configs.
    wait_for_topic(broker.bootstrap, name, 3)
    configs = describe_topic_config(broker.bootstrap, name)
    assert configs.get("retention.ms") == "123456", configs
    assert configs.get("cleanup.policy") == "delete", configs

    listing = ok(weir(weir_bin, broker, "topic", "list"))
    assert mentions(listing, name) and mentions(listing, other), listing

    described = ok(weir(weir_bin, broker, "topic", "describe", name))
    assert mentions(described, name), described
    assert re.search(r"partition", described, re.IGNORECASE), described

    # Creating it again fails.
    failed(weir(weir_bin, broker, "topic", "create", name, "--partitions", "3"))

    ok(weir(weir_bin, broker, "topic", "delete", name))
    wait_until(lambda: name not in list_topic_names(broker.bootstrap), timeout=20, what=f"{name} to disappear")
    listing = ok(weir(weir_bin, broker, "topic", "list"))
    assert not mentions(listing, name) and mentions(listing, other), listing
    failed(weir(weir_bin, broker, "topic", "describe", name))


def test_produce_then_consume_roundtrip(weir_bin, broker):
    topic = "cli-roundtrip"
    ok(weir(weir_bin, broker, "topic", "create", topic, "--partitions", "1"))
    values = ["hello from the weir cli", "second \u00fcnicode line \u2713", "third: has a colon = and equals"]

    t_before = now_ms()
    ok(weir(weir_bin, broker, "produce", topic, "--key", "user-1", "--header", "trace=abc", "--header", "app=cli",
            input="".join(v + "\n" for v in values)))  # fmt: skip
    t_after = now_ms()

    # Exactly what a Kafka client would see: one record per line, with the
    # key and headers given.
    records = ck_consume_partition(broker.bootstrap, topic, 0)
    assert [r.value.decode() for r in records] == values
    assert [r.offset for r in records] == [0, 1, 2]
    for r in records:
        assert r.key == b"user-1"
        assert r.headers == (("trace", b"abc"), ("app", b"cli"))
        assert r.create_time and t_before <= r.timestamp <= t_after, r

    out = ok(weir(weir_bin, broker, "consume", topic, "--from-beginning", "--max-messages", "3", "--timeout-ms", "10000"))
    assert in_order(out, values), out

    out = ok(weir(weir_bin, broker, "consume", topic, "--offset", "1", "--max-messages", "2", "--timeout-ms", "10000"))
    assert in_order(out, values[1:]) and values[0] not in out, out

    out = ok(weir(weir_bin, broker, "consume", topic, "--from-beginning", "--max-messages", "1", "--timeout-ms", "10000"))
    assert values[0] in out and values[1] not in out and values[2] not in out, out


def test_produce_from_file_to_partition(weir_bin, broker, tmp_path):
    topic = "cli-partitioned"
    ok(weir(weir_bin, broker, "topic", "create", topic, "--partitions", "3"))
    values = [f"file line {i}" for i in range(1, 6)]
    path = tmp_path / "records.txt"
    path.write_text("".join(v + "\n" for v in values))

    ok(weir(weir_bin, broker, "produce", topic, "--partition", "2", "--file", str(path)))

    assert [r.value.decode() for r in ck_consume_partition(broker.bootstrap, topic, 2)] == values
    assert ck_watermarks(broker.bootstrap, topic, 0) == (0, 0)
    assert ck_watermarks(broker.bootstrap, topic, 1) == (0, 0)

    out = ok(weir(weir_bin, broker, "consume", topic, "--partition", "2", "--from-beginning",
                  "--max-messages", "5", "--timeout-ms", "10000"))  # fmt: skip
    assert in_order(out, values), out


def test_consume_from_timestamp(weir_bin, broker):
    topic = "cli-timestamps"
    ok(weir(weir_bin, broker, "topic", "create", topic, "--partitions", "1"))
    base = now_ms() - 600_000
    values = ["at-base-plus-0", "at-base-plus-1000", "at-base-plus-2000"]
    deliveries = ck_produce(
        ck_producer(broker.bootstrap),
        topic,
        [dict(value=v.encode(), timestamp=base + 1000 * i, partition=0) for i, v in enumerate(values)],
    )
    assert all(d.error is None for d in deliveries)

    out = ok(weir(weir_bin, broker, "consume", topic, "--timestamp", str(base + 500),
                  "--max-messages", "2", "--timeout-ms", "10000"))  # fmt: skip
    assert in_order(out, values[1:]) and values[0] not in out, out


def test_unreachable_broker_fails_clearly(weir_bin):
    port = free_port()  # nothing listens here
    address = f"127.0.0.1:{port}"
    for args in (["topic", "list"], ["consume", "some-topic", "--from-beginning", "--timeout-ms", "2000"]):
        result = run_cli(weir_bin, *args, "--bootstrap", address, timeout=60)
        stderr = failed(result)
        assert str(port) in stderr or re.search(r"connect|refused|unreachable|unavailable", stderr, re.IGNORECASE), (
            "the error should say that the broker could not be reached\n" + describe_process(result)
        )


def test_consume_missing_topic_fails(weir_bin, broker):
    failed(weir(weir_bin, broker, "consume", "no-such-topic", "--from-beginning", "--timeout-ms", "2000"))
    # Reading must not create the topic as a side effect.
    assert "no-such-topic" not in list_topic_names(broker.bootstrap)
