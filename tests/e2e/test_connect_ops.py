"""The operational half of Kafka Connect's REST API: restarts, PATCH config, active topics,
offsets (read, alter and reset while STOPPED), plugin configs and validation."""

from __future__ import annotations

import time

import pytest

from helpers import wait_until
from test_connect import (
    WAIT,
    append_lines,
    call,
    complete_lines,
    create,
    error,
    get,
    sink_config,
    source_config,
    start_connect,
    wait_state,
)


@pytest.mark.timeout(180)
def test_restart_patch_topics_and_offsets(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(30)]
    append_lines(src, lines)
    create(broker, "src", source_config(src, "ops"))
    create(broker, "snk", sink_config(out, "ops"))
    wait_until(lambda: complete_lines(out) == lines, timeout=WAIT, what="every line")

    # Restarts: 204 for the connector alone, 202 with the status for its tasks.
    call(broker, "POST", "/connectors/snk/restart", status=204)
    _, st = call(broker, "POST", "/connectors/snk/restart?includeTasks=true", status=202)
    assert st["name"] == "snk" and st["type"] == "sink", st
    assert [t["state"] for t in st["tasks"]] == ["RESTARTING"], st
    _, st = call(broker, "POST", "/connectors/snk/restart?includeTasks=true&onlyFailed=true", status=202)
    assert [t["state"] for t in st["tasks"]] == ["RUNNING"], st  # nothing failed: nothing restarted
    call(broker, "POST", "/connectors/src/tasks/0/restart", status=204)
    error(broker, "POST", "/connectors/src/tasks/5/restart", status=404)
    error(broker, "POST", "/connectors/nope/restart", status=404, mentions=["nope"])
    error(broker, "POST", "/connectors/snk/restart?includeTasks=maybe", status=400, mentions=["includeTasks"])
    wait_state(broker, "snk", "RUNNING")
    more = [f"line {i}" for i in range(30, 40)]
    append_lines(src, more)
    wait_until(lambda: complete_lines(out) == lines + more, timeout=WAIT, what="lines after restarts, once")

    # Active topics.
    assert get(broker, "/connectors/src/topics") == {"src": {"topics": ["ops"]}}
    assert get(broker, "/connectors/snk/topics") == {"snk": {"topics": ["ops"]}}
    call(broker, "PUT", "/connectors/src/topics/reset", status=200)
    assert get(broker, "/connectors/src/topics") == {"src": {"topics": []}}

    # PATCH: set a key, remove another (null).
    _, info = call(broker, "PATCH", "/connectors/src/config", {"batch.size": "7", "tasks.max": None}, status=200)
    assert info["config"]["batch.size"] == "7" and "tasks.max" not in info["config"], info
    error(broker, "PATCH", "/connectors/src/config", {"batch.size": "lots"}, status=400, mentions=["batch.size"])

    # Offsets: read anytime; altered and reset only while STOPPED.
    offs = get(broker, "/connectors/src/offsets")
    assert offs["offsets"] and offs["offsets"][0]["partition"] == {"filename": str(src)}, offs
    assert offs["offsets"][0]["offset"]["position"] == src.stat().st_size, offs
    sink_offs = get(broker, "/connectors/snk/offsets")
    assert sink_offs == {"offsets": [{"partition": {"kafka_topic": "ops", "kafka_partition": 0},
                                      "offset": {"kafka_offset": 40}}]}, sink_offs  # fmt: skip
    error(broker, "DELETE", "/connectors/src/offsets", status=400, mentions=["STOPPED"])
    call(broker, "PUT", "/connectors/src/stop", status=204)
    call(broker, "PUT", "/connectors/snk/stop", status=204)
    _, msg = call(broker, "PATCH", "/connectors/src/offsets",
                  {"offsets": [{"partition": {"filename": str(src)}, "offset": {"position": 0}}]}, status=200)  # fmt: skip
    assert msg == {"message": "The offsets for this connector have been altered successfully"}
    assert get(broker, "/connectors/src/offsets")["offsets"][0]["offset"] == {"position": 0}
    _, msg = call(broker, "DELETE", "/connectors/snk/offsets", status=200)
    assert msg == {"message": "The offsets for this connector have been reset successfully"}
    assert get(broker, "/connectors/snk/offsets") == {"offsets": []}

    # Started again: the source re-reads from 0 (so the topic has every line twice) and the
    # sink, reset, reads the topic from the start: the file sink still writes each record
    # once per offset it had not written (it skips what its sidecar says it has).
    call(broker, "PUT", "/connectors/src/resume", status=202)
    call(broker, "PUT", "/connectors/snk/resume", status=202)
    wait_state(broker, "src", "RUNNING")
    wait_until(lambda: len(complete_lines(out)) == 80, timeout=WAIT, what="the re-read lines")
    assert complete_lines(out) == lines + more + lines + more


@pytest.mark.timeout(120)
def test_plugin_config_and_validate(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    defs = get(broker, "/connector-plugins/FileStreamSource/config")
    names = {d["name"] for d in defs}
    assert {"file", "topic", "batch.size"} <= names, names
    for d in defs:
        assert set(d) == {"name", "type", "required", "default_value", "importance", "documentation",
                          "group", "width", "display_name", "dependents", "order"}, d  # fmt: skip
    batch = next(d for d in defs if d["name"] == "batch.size")
    assert batch["type"] == "INT", batch
    error(broker, "GET", "/connector-plugins/NoSuch/config", status=404)

    good = {"connector.class": "FileStreamSource", "file": str(tmp_path / "x.txt"), "topic": "t"}
    _, v = call(broker, "PUT", "/connector-plugins/FileStreamSource/config/validate", good, status=200)
    assert v["error_count"] == 0, v
    assert set(v) == {"name", "error_count", "groups", "configs"}, v
    for c in v["configs"]:
        assert set(c) == {"definition", "value"} and set(c["value"]) == {
            "name", "value", "recommended_values", "errors", "visible"}, c  # fmt: skip
    _, v = call(broker, "PUT", "/connector-plugins/FileStreamSource/config/validate",
                {**good, "batch.size": "lots", "tasks.max": "0"}, status=200)  # fmt: skip
    assert v["error_count"] >= 1, v
    with_errors = {c["value"]["name"] for c in v["configs"] if c["value"]["errors"]}
    assert with_errors & {"batch.size", "tasks.max"}, v


@pytest.mark.timeout(120)
def test_config_providers_resolve_at_start_and_never_show(start_broker, tmp_path):
    """`${env:NAME}` and `${file:path:key}` are resolved when tasks start; the stored and
    shown config keeps the references."""
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    props = tmp_path / "sink.properties"
    props.write_text(f"# where the sink writes\nfile = {out}\n")
    broker = start_connect(start_broker, tmp_path, env={"WEIR_E2E_INPUT": str(src)})
    append_lines(src, ["a", "b"])
    create(broker, "env-src", source_config("${env:WEIR_E2E_INPUT}", "prov"))
    create(broker, "file-snk", sink_config(f"${{file:{props}:file}}", "prov"))
    wait_until(lambda: complete_lines(out) == ["a", "b"], timeout=WAIT, what="both lines")
    assert get(broker, "/connectors/env-src/config")["file"] == "${env:WEIR_E2E_INPUT}"
    assert get(broker, "/connectors/file-snk")["config"]["file"] == f"${{file:{props}:file}}"
    error(broker, "POST", "/connectors", {"name": "bad", "config": source_config("${env:WEIR_E2E_UNSET}", "t")},
          status=400, mentions=["file", "WEIR_E2E_UNSET"])  # fmt: skip
    error(broker, "POST", "/connectors", {"name": "bad", "config": source_config("${vault:x}", "t")},
          status=400, mentions=["vault"])  # fmt: skip


@pytest.mark.timeout(120)
def test_datagen_writes_count_records_across_tasks(start_broker, tmp_path):
    from helpers import ck_consume_partition, ck_watermarks
    import json

    broker = start_connect(start_broker, tmp_path)
    create(broker, "gen", {"connector.class": "datagen", "topic": "gen", "count": "1000", "keys": "5",
                           "value.size": "120", "tasks.max": "2"})  # fmt: skip
    wait_until(lambda: ck_watermarks(broker.bootstrap, "gen", 0)[1] == 1000, timeout=WAIT, what="1000 records")
    records = ck_consume_partition(broker.bootstrap, "gen", 0, 0, timeout=30)
    values = [json.loads(r.value) for r in records]
    assert sorted(v["id"] for v in values) == list(range(1000))
    assert all(len(r.value) == 120 for r in records), {len(r.value) for r in records}
    assert {r.key for r in records} == {f"k-{i}".encode() for i in range(5)}
    assert {v["key"] for v in values} == {f"k-{i}" for i in range(5)}
    st = get(broker, "/connectors/gen/status")
    assert [t["state"] for t in st["tasks"]] == ["RUNNING", "RUNNING"], st
    def stored():
        offsets = get(broker, "/connectors/gen/offsets")["offsets"]
        got = sorted((o["partition"]["generator"], o["offset"]["next"]) for o in offsets)
        assert got == [(0, 500), (1, 500)], offsets
        return got

    wait_until(stored, timeout=WAIT, what="each task's offset stored")


@pytest.mark.timeout(300)
def test_bench_pipeline_runs_and_prints_every_figure(weir_bin):
    """The benchmark itself (not its figures: timings are never asserted in tests)."""
    from helpers import describe_process, run_cli
    from test_connect import rust_guest

    r = run_cli(weir_bin, "bench", "pipeline", "--records", "20000", "--wasm", str(rust_guest(weir_bin, "json_rewrite")),
                "--wasm-config", "from=id", "--wasm-config", "to=ident", timeout=240)  # fmt: skip
    assert r.returncode == 0, describe_process(r)
    for figure in ("baseline", "(a)", "(b)", "(c)", "resident memory"):
        assert figure in r.stdout, r.stdout
    assert "json-rewrite (wasm)" in r.stdout, r.stdout


@pytest.mark.timeout(60)
def test_admin_loggers(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    levels = get(broker, "/admin/loggers")
    assert levels["root"]["level"] in ("INFO", "WARN", "DEBUG", "TRACE", "ERROR"), levels
    _, changed = call(broker, "PUT", "/admin/loggers/weir_connect", {"level": "DEBUG"}, status=200)
    assert changed == ["weir_connect"]
    got = get(broker, "/admin/loggers/weir_connect")
    assert got["level"] == "DEBUG" and isinstance(got["last_modified"], int), got
    assert get(broker, "/admin/loggers")["weir_connect"]["level"] == "DEBUG"
    # The new level takes effect: a connector's debug lines appear in the log.
    src = tmp_path / "in.txt"
    append_lines(src, ["a"])
    create(broker, "dbg", source_config(src, "dbg"))
    wait_until(lambda: "source offsets stored" in broker.log_tail(), timeout=WAIT, what="a debug line")
    call(broker, "PUT", "/admin/loggers/weir_connect", {"level": "WARN"}, status=200)
    call(broker, "PUT", "/admin/loggers/root?scope=cluster", {"level": "INFO"}, status=204)
    error(broker, "PUT", "/admin/loggers/root", {"level": "LOUD"}, status=404, mentions=["LOUD"])


@pytest.mark.timeout(120)
def test_a_regex_sink_reads_a_topic_created_later_exactly_once(start_broker, tmp_path):
    """A sink with `topics.regex` picks up a matching topic created after it started (here by a
    producer's auto-create), as Kafka Connect's consumers do after a metadata refresh: its tasks
    are rebalanced, flushing and committing first, so the file holds every record once. A sink
    on other topics is left alone."""
    from collections import Counter

    from helpers import ck_producer

    def produce(topic: str, values: list) -> None:
        p = ck_producer(broker.bootstrap)
        for v in values:
            p.produce(topic, value=v.encode())
        assert p.flush(30) == 0

    broker = start_connect(start_broker, tmp_path, env={"WEIR_CONNECT__TOPIC_REFRESH_INTERVAL_MS": "300"})
    out, other = tmp_path / "out.txt", tmp_path / "other.txt"
    a1 = [f"a {i}" for i in range(50)]
    produce("events-a", a1)
    produce("logs", ["log 0", "log 1"])
    create(broker, "snk", {"connector.class": "FileStreamSink", "file": str(out), "topics.regex": "events-.*"})
    create(broker, "other", sink_config(other, "logs"))
    wait_until(lambda: complete_lines(out) == a1, timeout=WAIT, what="events-a in the file")
    wait_until(lambda: complete_lines(other) == ["log 0", "log 1"], timeout=WAIT, what="logs in the other file")
    assert get(broker, "/connectors/snk/topics") == {"snk": {"topics": ["events-a"]}}

    b = [f"b {i}" for i in range(50)]
    produce("events-b", b)  # auto-created
    a2 = [f"a {i}" for i in range(50, 80)]
    produce("events-a", a2)
    want = Counter(a1 + a2 + b)

    def every_record_once():
        got = Counter(complete_lines(out))
        assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
        return True

    wait_until(every_record_once, timeout=WAIT, interval=0.2, what="events-b in the file, each record once")
    assert get(broker, "/connectors/snk/topics") == {"snk": {"topics": ["events-a", "events-b"]}}
    # Each partition's records stay in order.
    lines = complete_lines(out)
    assert [x for x in lines if x.startswith("a ")] == a1 + a2
    assert [x for x in lines if x.startswith("b ")] == b

    # Several refreshes later: nothing read twice, offsets committed for both topics, the
    # other sink was never restarted.
    time.sleep(1.5)
    every_record_once()
    wait_state(broker, "snk", "RUNNING")

    def committed():
        offs = get(broker, "/connectors/snk/offsets")["offsets"]
        got = sorted((o["partition"]["kafka_topic"], o["offset"]["kafka_offset"]) for o in offs)
        assert got == [("events-a", 80), ("events-b", 50)], offs
        return True

    wait_until(committed, timeout=WAIT, what="both topics' offsets committed")
    log = broker.log_path.read_text(errors="replace")
    changed = [x for x in log.splitlines() if "sink assignment changed" in x]
    assert changed and all("snk" in x and "events-b-0" in x for x in changed), changed
    assert not any("other" in x for x in changed), changed
    assert complete_lines(other) == ["log 0", "log 1"]
