"""The Connect runtime's error handling end to end: errors.tolerance with a dead letter queue and
Kafka's context headers, a truthful FAILED status, and tasks that restart by themselves with
backoff and lose nothing."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from helpers import ck_consume_partition, ck_producer, wait_until
from test_connect import (
    WAIT,
    append_lines,
    complete_lines,
    create,
    get,
    high_watermark,
    sink_config,
    source_config,
    start_connect,
    wait_lag,
    wait_output,
)


# Restarts come quickly here (the default backoff starts at 1 s and doubles to 60 s).
FAST_RESTARTS = {"WEIR_CONNECT__RESTART_BACKOFF_INITIAL_MS": "200", "WEIR_CONNECT__RESTART_BACKOFF_MAX_MS": "800"}


def task_status(broker, name: str) -> dict:
    return get(broker, f"/connectors/{name}/status")


def produce(bootstrap: str, topic: str, values: list) -> None:
    p = ck_producer(bootstrap)
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


@pytest.mark.timeout(180)
def test_tolerated_records_go_to_the_dead_letter_queue_with_context(weir_bin, start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    good = [json.dumps({"n": i}).encode() for i in range(20)]
    bad = [b"not json", b"{broken"]
    values = good[:10] + [bad[0]] + good[10:] + [bad[1]]
    p = ck_producer(broker.bootstrap)
    for v in values:
        # A repeated header name: the dead letter queue keeps both.
        p.produce("events", value=v, headers=[("h", b"1"), ("h", b"2")] if v == bad[0] else None)
    assert p.flush(30) == 0
    out = tmp_path / "out.txt"
    create(broker, "tolerant", sink_config(out, "events", **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "errors.tolerance": "all",
        "errors.log.enable": "true",
        "errors.deadletterqueue.topic.name": "dlq-events",
        "errors.deadletterqueue.context.headers.enable": "true",
    }))  # fmt: skip
    wait_until(lambda: len(complete_lines(out)) == len(good), timeout=WAIT, what="every good record written")
    assert [json.loads(x) for x in complete_lines(out)] == [{"n": i} for i in range(20)]
    wait_lag(weir_bin, broker, "connect-tolerant", "events", len(values))
    dead = ck_consume_partition(broker.bootstrap, "dlq-events", 0, 0, timeout=30)
    assert [r.value for r in dead] == bad
    headers = dict((k, v.decode()) for k, v in dead[0].headers)
    assert headers["__connect.errors.topic"] == "events"
    assert headers["__connect.errors.partition"] == "0"
    assert headers["__connect.errors.offset"] == "10"
    assert headers["__connect.errors.connector.name"] == "tolerant"
    assert headers["__connect.errors.task.id"] == "0"
    assert headers["__connect.errors.stage"] == "VALUE_CONVERTER"
    assert headers["__connect.errors.class.name"] == "org.apache.kafka.connect.json.JsonConverter"
    assert headers["__connect.errors.exception.message"]
    assert [(k, v) for k, v in dead[0].headers if k == "h"] == [("h", b"1"), ("h", b"2")]
    st = task_status(broker, "tolerant")
    assert st["connector"]["state"] == "RUNNING", st
    task = st["tasks"][0]
    assert task["state"] == "RUNNING" and task["errors_tolerated"] == 2 and task["dead_lettered"] == 2, task


# What a dead-lettered record carries about where it failed. A source record has no log position
# yet: no partition or offset header.
SOURCE_CONTEXT = {
    "__connect.errors.topic",
    "__connect.errors.connector.name",
    "__connect.errors.task.id",
    "__connect.errors.stage",
    "__connect.errors.class.name",
    "__connect.errors.exception.class.name",
    "__connect.errors.exception.message",
    "__connect.errors.exception.stacktrace",
}
SINK_CONTEXT = SOURCE_CONTEXT | {"__connect.errors.partition", "__connect.errors.offset"}
JSON_VALUES = {
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
}


def dlq_on(topic: str) -> dict:
    return {
        "errors.tolerance": "all",
        "errors.log.enable": "true",
        "errors.deadletterqueue.topic.name": topic,
        "errors.deadletterqueue.context.headers.enable": "true",
    }


def context(record) -> dict:
    """A dead-lettered record's headers as {name: text}; each name once."""
    names = [k for k, _ in record.headers]
    assert len(names) == len(set(names)), f"a header twice: {names}"
    return {k: (v.decode() if v is not None else None) for k, v in record.headers}


def wait_counted(broker, name: str, tolerated: int, dead_lettered: int) -> dict:
    """Wait until the task's status counts exactly these records, RUNNING all along."""

    def probe():
        st = task_status(broker, name)
        task = st["tasks"][0]
        assert st["connector"]["state"] == "RUNNING" and task["state"] == "RUNNING", st
        assert "trace" not in task and "restarts" not in task, st
        counted = (task.get("errors_tolerated", 0), task.get("dead_lettered", 0))
        assert counted == (tolerated, dead_lettered), f"want {(tolerated, dead_lettered)}: {task}"
        return st

    return wait_until(probe, timeout=WAIT, what=f"{name} counting {tolerated} tolerated, {dead_lettered} dead-lettered")


def wait_records(bootstrap: str, topic: str, n: int) -> list:
    """The records of `topic`'s one partition once it holds `n`."""

    def probe():
        got = ck_consume_partition(bootstrap, topic, 0, 0, timeout=10)
        assert len(got) == n, f"{len(got)} records: {[r.value for r in got]}"
        return got

    return wait_until(probe, timeout=WAIT, interval=0.2, what=f"{n} records in {topic}")


def extract_on_a_source(start_broker, tmp_path, bad: dict) -> list:
    """A file source whose transform (ExtractField$Value, field x) fails on the lines `bad`
    ({line number: line}: JSON but not an object, or not JSON); the other lines are objects.
    Checks that the good records reach the topic and a sink, that the bad ones are counted and
    dead-lettered with the TRANSFORMATION stage in Kafka's context headers, and returns the
    dead letter queue's records."""
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    lines, good = [], []
    for i in range(24):
        if i in bad:
            lines.append(bad[i])
        else:
            lines.append(json.dumps({"x": {"n": i}, "other": "dropped"}))
            good.append({"n": i})
    append_lines(src, lines)
    create(broker, "extract-src", source_config(src, "extracted", **JSON_VALUES, **dlq_on("dlq-extract"), **{
        "transforms": "extract",
        "transforms.extract.type": "org.apache.kafka.connect.transforms.ExtractField$Value",
        "transforms.extract.field": "x",
    }))  # fmt: skip
    create(broker, "extracted-snk", sink_config(out, "extracted"))

    wait_counted(broker, "extract-src", tolerated=len(bad), dead_lettered=len(bad))
    records = wait_records(broker.bootstrap, "extracted", len(good))
    assert [json.loads(r.value) for r in records] == good
    assert all(r.key is None and r.headers == () for r in records), records[0]
    wait_until(lambda: [json.loads(x) for x in complete_lines(out)] == good, timeout=WAIT,
               what="the good records in the sink's file")  # fmt: skip

    dead = wait_records(broker.bootstrap, "dlq-extract", len(bad))
    assert all(r.key is None for r in dead), dead
    for r, line in zip(dead, bad.values()):
        h = context(r)
        assert set(h) == SOURCE_CONTEXT, h
        assert h["__connect.errors.topic"] == "extracted", h
        assert h["__connect.errors.connector.name"] == "extract-src", h
        assert h["__connect.errors.task.id"] == "0", h
        assert h["__connect.errors.stage"] == "TRANSFORMATION", h
        assert h["__connect.errors.class.name"] == "org.apache.kafka.connect.transforms.ExtractField$Value", h
        assert h["__connect.errors.exception.class.name"] == "org.apache.kafka.connect.errors.DataException", h
        message = h["__connect.errors.exception.message"]
        try:
            json.loads(line)
        except ValueError:
            assert message.startswith("transform extract failed: ExtractField needs a structured value, "
                                      "and this one is not JSON"), message  # fmt: skip
        else:
            assert message == "transform extract failed: ExtractField works on a struct or map value only", message
        assert h["__connect.errors.exception.stacktrace"].startswith(f"{message} at stage TRANSFORMATION for a record to extracted"), h
    # Nothing else arrives later: the counts stay, and the DLQ has only these.
    wait_counted(broker, "extract-src", tolerated=len(bad), dead_lettered=len(bad))
    assert high_watermark(broker.bootstrap, "dlq-extract") == len(bad)
    return dead


@pytest.mark.timeout(180)
def test_a_failing_source_transform_dead_letters_its_records(start_broker, tmp_path):
    """Lines that are JSON but not objects, or not JSON at all, fail the source's transform:
    they go to the dead letter queue as they were read, with Kafka's context headers; the
    others go on to the topic and a sink, and the status counts the skipped ones."""
    bad = {3: "42", 7: "not json", 11: "[1,2]", 19: "true"}
    dead = extract_on_a_source(start_broker, tmp_path, bad)
    assert [r.value for r in dead] == [v.encode() for v in bad.values()]


@pytest.mark.timeout(180)
def test_a_failing_source_transform_dead_letters_the_lines_as_they_were_read(start_broker, tmp_path):
    bad = {3: '"a string"', 11: "[1, 2]", 19: "[ true , false ]"}
    dead = extract_on_a_source(start_broker, tmp_path, bad)
    assert [r.value for r in dead] == [v.encode() for v in bad.values()]


def extract_on_a_sink(weir_bin, start_broker, tmp_path) -> tuple:
    """A sink that reads JsonConverter envelopes (schemas on) and extracts a field; records
    whose payload is not a struct fail the transform. Checks that the others reach the file,
    that the group's lag falls to 0, that the bad ones are counted and dead-lettered with their
    topic, partition and offset and the TRANSFORMATION stage; returns (the dead letter queue's
    records, the values consumed for them)."""
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    struct = {"type": "struct", "optional": False, "fields": [{"field": "x", "type": "int32", "optional": False}]}
    values, good, bad_at = [], [], {}
    for i in range(12):
        if i in (2, 8):
            envelope = {"schema": {"type": "int32", "optional": False}, "payload": i}
            bad_at[i] = json.dumps(envelope).encode()  # with json's spaces, as a producer wrote it
            values.append(bad_at[i])
        else:
            values.append(json.dumps({"schema": struct, "payload": {"x": i}}).encode())
            good.append(str(i))
    produce(broker.bootstrap, "envelopes", values)
    out = tmp_path / "out.txt"
    create(broker, "extract-snk", sink_config(out, "envelopes", **dlq_on("dlq-snk"), **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "transforms": "extract",
        "transforms.extract.type": "org.apache.kafka.connect.transforms.ExtractField$Value",
        "transforms.extract.field": "x",
    }))  # fmt: skip
    wait_output(out, good)
    wait_counted(broker, "extract-snk", tolerated=len(bad_at), dead_lettered=len(bad_at))
    wait_lag(weir_bin, broker, "connect-extract-snk", "envelopes", len(values))
    dead = wait_records(broker.bootstrap, "dlq-snk", len(bad_at))
    for r, offset in zip(dead, bad_at):
        h = context(r)
        assert set(h) == SINK_CONTEXT, h
        assert (h["__connect.errors.topic"], h["__connect.errors.partition"], h["__connect.errors.offset"]) == (
            "envelopes", "0", str(offset)), h  # fmt: skip
        assert h["__connect.errors.connector.name"] == "extract-snk", h
        assert h["__connect.errors.task.id"] == "0", h
        assert h["__connect.errors.stage"] == "TRANSFORMATION", h
        assert h["__connect.errors.class.name"] == "org.apache.kafka.connect.transforms.ExtractField$Value", h
        assert h["__connect.errors.exception.class.name"] == "org.apache.kafka.connect.errors.DataException", h
        message = h["__connect.errors.exception.message"]
        assert message == "transform extract failed: ExtractField works on a struct or map value only", h
        assert h["__connect.errors.exception.stacktrace"] == (
            f"{message} at stage TRANSFORMATION for envelopes-0 offset {offset}"), h  # fmt: skip
    wait_counted(broker, "extract-snk", tolerated=len(bad_at), dead_lettered=len(bad_at))
    assert high_watermark(broker.bootstrap, "dlq-snk") == len(bad_at)
    return dead, list(bad_at.values())


@pytest.mark.timeout(180)
def test_a_failing_sink_transform_dead_letters_its_records(weir_bin, start_broker, tmp_path):
    """Records whose payload is not a struct fail the sink's transform: they go to the dead
    letter queue with Kafka's context headers; the others reach the file."""
    dead, consumed = extract_on_a_sink(weir_bin, start_broker, tmp_path)
    assert len(dead) == len(consumed) == 2


@pytest.mark.timeout(180)
def test_a_failing_sink_transform_dead_letters_the_records_as_they_were_consumed(weir_bin, start_broker, tmp_path):
    dead, consumed = extract_on_a_sink(weir_bin, start_broker, tmp_path)
    assert [r.value for r in dead] == consumed


def unparsable_on_a_source(start_broker, tmp_path) -> tuple:
    """A file source that says its values are JSON (weir.value.format=json) reads lines that
    are not. Checks that the JSON lines reach the topic and a sink, that the others are counted
    and dead-lettered with the TASK_POLL stage in Kafka's context headers; returns (the dead
    letter queue's records, the lines read for them)."""
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    bad = {0: "not json", 5: "{broken", 9: '{"n": 9} trailing', 14: '"unterminated'}
    lines, good = [], []
    for i in range(16):
        if i in bad:
            lines.append(bad[i])
        else:
            lines.append(json.dumps({"n": i}))
            good.append({"n": i})
    append_lines(src, lines)
    create(broker, "json-src", source_config(src, "parsed", **JSON_VALUES, **dlq_on("dlq-parse"), **{
        "weir.value.format": "json",
    }))  # fmt: skip
    create(broker, "parsed-snk", sink_config(out, "parsed"))

    wait_counted(broker, "json-src", tolerated=len(bad), dead_lettered=len(bad))
    records = wait_records(broker.bootstrap, "parsed", len(good))
    assert [json.loads(r.value) for r in records] == good
    wait_until(lambda: [json.loads(x) for x in complete_lines(out)] == good, timeout=WAIT,
               what="the good records in the sink's file")  # fmt: skip

    dead = wait_records(broker.bootstrap, "dlq-parse", len(bad))
    why = ["expected ident at line 1 column 2", "key must be a string at line 1 column 2",
           "trailing characters at line 1 column 10", "EOF while parsing a string at line 1 column 13"]  # fmt: skip
    for r, reason in zip(dead, why):
        assert r.key is None, r
        h = context(r)
        assert set(h) == SOURCE_CONTEXT, h
        assert h["__connect.errors.topic"] == "parsed", h
        assert h["__connect.errors.connector.name"] == "json-src", h
        assert h["__connect.errors.task.id"] == "0", h
        assert h["__connect.errors.stage"] == "TASK_POLL", h
        assert h["__connect.errors.class.name"] == "FileStreamSource", h
        assert h["__connect.errors.exception.class.name"] == "org.apache.kafka.connect.errors.DataException", h
        message = h["__connect.errors.exception.message"]
        assert message == f"the plugin's JSON does not parse: {reason}", message
        assert h["__connect.errors.exception.stacktrace"].startswith(f"{message} at stage TASK_POLL for a record to parsed"), h
    wait_counted(broker, "json-src", tolerated=len(bad), dead_lettered=len(bad))
    assert high_watermark(broker.bootstrap, "dlq-parse") == len(bad)
    return dead, [v.encode() for v in bad.values()]


@pytest.mark.timeout(180)
def test_unparsable_source_records_are_dead_lettered_at_the_poll_stage(start_broker, tmp_path):
    """Lines that are not JSON from a source whose values are JSON: they go to the dead letter
    queue with the TASK_POLL stage in Kafka's context headers; the JSON lines go on to the topic
    and a sink, and the status counts the others."""
    dead, read = unparsable_on_a_source(start_broker, tmp_path)
    assert len(dead) == len(read) == 4


@pytest.mark.timeout(180)
def test_unparsable_source_records_are_dead_lettered_with_their_bytes(start_broker, tmp_path):
    dead, read = unparsable_on_a_source(start_broker, tmp_path)
    assert [r.value for r in dead] == read


@pytest.mark.timeout(180)
def test_intolerable_record_fails_the_task_and_the_connector(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    produce(broker.bootstrap, "strict", [b'{"a": 1}', b"not json"])
    out = tmp_path / "out.txt"
    create(broker, "strict", sink_config(out, "strict", **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    }))  # fmt: skip

    def failed():
        st = task_status(broker, "strict")
        task = st["tasks"][0]
        assert st["connector"]["state"] == "FAILED" and task["state"] == "FAILED", st
        assert "offset 1" in task["trace"] and "VALUE_CONVERTER" in task["trace"], task
        return st

    wait_until(failed, timeout=WAIT, what="the connector FAILED")
    # It keeps retrying with backoff (the record stays bad): the restart count grows.
    wait_until(lambda: task_status(broker, "strict")["tasks"][0].get("restarts", 0) >= 2, timeout=WAIT,
               what="two restarts")  # fmt: skip
    assert complete_lines(out) == []


# Backoff 500 ms, doubling, at most 2 s: the waits between attempts are 0.5, 1 and 2 s, so the
# third one leaves the test two seconds to remove the cause of the failures.
SLOW_THIRD_RESTART = {"WEIR_CONNECT__RESTART_BACKOFF_INITIAL_MS": "500", "WEIR_CONNECT__RESTART_BACKOFF_MAX_MS": "2000"}


@pytest.mark.timeout(180)
def test_a_failing_sink_restarts_by_itself_and_loses_nothing(weir_bin, start_broker, tmp_path):
    """A sink that fails 3 times and then succeeds: nothing lost. The sink's file is a directory
    at first, so opening it fails (a retriable error) and the task restarts with backoff; the
    directory is removed while the task waits after its third failure, so the fourth attempt
    runs, and every line arrives exactly once."""
    broker = start_connect(start_broker, tmp_path, env=SLOW_THIRD_RESTART)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(50)]
    append_lines(src, lines)
    out.mkdir()
    create(broker, "src", source_config(src, "flaky"))
    create(broker, "flaky-sink", sink_config(out, "flaky"))
    wait_until(lambda: high_watermark(broker.bootstrap, "flaky") == len(lines), timeout=WAIT,
               what="every line in the topic")  # fmt: skip

    def failed_for_the_third_time():
        st = task_status(broker, "flaky-sink")
        task = st["tasks"][0]
        # Restarted twice, failed again, waiting for the third restart.
        assert task.get("restarts", 0) <= 2, f"missed the third failure: {task}"
        assert task["state"] == "FAILED" and task.get("restarts", 0) == 2, task
        return st

    st = wait_until(failed_for_the_third_time, timeout=WAIT, interval=0.05, what="the sink's third failure")
    shutil.rmtree(out)
    task = st["tasks"][0]
    trace = task["trace"]
    assert f"cannot open {out}" in trace and "Is a directory" in trace, trace
    assert trace.endswith("(restart 3 in 2000 ms)"), trace
    assert st["connector"]["state"] == "FAILED", f"its only task failed: {st}"

    wait_output(out, lines)
    more = [f"line {i}" for i in range(50, 60)]
    append_lines(src, more)
    wait_output(out, lines + more)
    wait_lag(weir_bin, broker, "connect-flaky-sink", "flaky", len(lines) + len(more))
    st = task_status(broker, "flaky-sink")
    assert st["connector"] == {"state": "RUNNING", "worker_id": st["connector"]["worker_id"]}, st
    assert st["tasks"][0] == {"id": 0, "state": "RUNNING", "worker_id": st["connector"]["worker_id"],
                              "restarts": 3}, f"failed exactly 3 times, then ran: {st}"  # fmt: skip
    assert complete_lines(out) == lines + more


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "plugin,settings,says",
    [
        pytest.param("trap", {"on": "line 3"}, "trap", id="traps"),
        pytest.param("spin", {"weir.call.deadline.ms": "300"}, "deadline", id="loops"),
        pytest.param("hog", {"weir.memory.limit.bytes": str(16 << 20)}, "memory", id="exhausts-memory"),
    ],
)
def test_a_failing_plugin_restarts_with_backoff_while_others_run(weir_bin, start_broker, tmp_path, plugin, settings, says):
    """A WebAssembly transform that traps, loops past its deadline or runs out of memory fails
    its task, which restarts by itself with backoff (and fails again: the record is the same);
    another connector's records keep flowing meanwhile."""
    from helpers import describe_process, run_cli
    from test_connect import rust_guest

    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    installed = run_cli(weir_bin, "plugin", "install", str(rust_guest(weir_bin, plugin)), "--dir", str(tmp_path / "plugins"))
    assert installed.returncode == 0, describe_process(installed)
    bad_in = tmp_path / "bad.txt"
    append_lines(bad_in, [f"line {i}" for i in range(40)])  # hog: 1 MiB a record, past 16 MiB
    chain = {"transforms": "x", "transforms.x.type": plugin}
    chain.update({f"transforms.x.{k}": v for k, v in settings.items()})
    create(broker, "bad-src", source_config(bad_in, "bad", **chain))
    good_in, good_out = tmp_path / "good.txt", tmp_path / "good-out.txt"
    create(broker, "good-src", source_config(good_in, "good"))
    create(broker, "good-snk", sink_config(good_out, "good"))

    def failing_and_restarting():
        task = task_status(broker, "bad-src")["tasks"][0]
        assert task.get("restarts", 0) >= 2, task
        return task

    sent = []
    deadline = time.monotonic() + WAIT
    task = None
    while time.monotonic() < deadline:
        batch = [f"good {len(sent) + i}" for i in range(20)]
        append_lines(good_in, batch)
        sent += batch
        try:
            task = failing_and_restarting()
            break
        except AssertionError:
            time.sleep(0.2)
    assert task is not None, task_status(broker, "bad-src")
    wait_until(lambda: complete_lines(good_out) == sent, timeout=WAIT, what="the good connector's lines")
    st = task_status(broker, "bad-src")
    trace = st["tasks"][0].get("trace") or ""
    if st["tasks"][0]["state"] == "FAILED":
        assert plugin in trace and says in trace.lower(), trace
    assert task_status(broker, "good-snk")["tasks"][0]["state"] == "RUNNING"
