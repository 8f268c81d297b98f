"""The Connect runtime's error handling end to end: errors.tolerance with a dead letter queue and
Kafka's context headers, a truthful FAILED status, and tasks that restart by themselves with
backoff and lose nothing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from helpers import ck_consume_partition, ck_producer, wait_until
from test_connect import (
    WAIT,
    call,
    complete_lines,
    create,
    get,
    sink_config,
    source_config,
    start_connect,
    append_lines,
    wait_lag,
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
    produce(broker.bootstrap, "events", values)
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
    assert headers["__connect.errors.exception.message"]
    st = task_status(broker, "tolerant")
    assert st["connector"]["state"] == "RUNNING", st
    task = st["tasks"][0]
    assert task["state"] == "RUNNING" and task["errors_tolerated"] == 2 and task["dead_lettered"] == 2, task


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


@pytest.mark.timeout(180)
def test_a_failing_sink_restarts_by_itself_and_loses_nothing(start_broker, tmp_path):
    """The sink's file is a directory at first: its task fails (a retriable error) and is
    restarted with backoff; once the directory is gone it runs, and every line arrives once."""
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(50)]
    append_lines(src, lines)
    out.mkdir()
    create(broker, "src", source_config(src, "flaky"))
    create(broker, "flaky-sink", sink_config(out, "flaky"))

    def restarted_twice():
        task = task_status(broker, "flaky-sink")["tasks"][0]
        assert task.get("restarts", 0) >= 2, task
        return task

    task = wait_until(restarted_twice, timeout=WAIT, what="the sink task failing and restarting")
    assert "restart" in (task.get("trace") or "") or task["state"] in ("FAILED", "RUNNING"), task
    shutil.rmtree(out)
    wait_until(lambda: complete_lines(out) == lines, timeout=WAIT, what="every line once")
    more = [f"line {i}" for i in range(50, 60)]
    append_lines(src, more)
    wait_until(lambda: complete_lines(out) == lines + more, timeout=WAIT, what="new lines once")
    st = task_status(broker, "flaky-sink")
    assert st["connector"]["state"] == "RUNNING" and st["tasks"][0]["state"] == "RUNNING", st
    assert "trace" not in st["tasks"][0], st


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
