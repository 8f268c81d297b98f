"""The Connect runtime end to end: the REST API, the built-in file connectors, restarts, weir.toml.

* The REST API follows Kafka Connect 4.x (paths, status codes, JSON shapes, `{error_code,
  message}` errors), checked field by field against one broker.
* A pipeline FileStreamSource -> topic -> FileStreamSink while a writer keeps appending lines to
  the input file: five SIGKILLs of `weir up` mid-stream (connectors come back from
  `connect-configs`, never re-POSTed). The source is at least once, so the topic may hold a line
  twice, but only as a re-read from a committed position; the file sink is exactly once, so the
  output holds every record of the topic exactly once. With SIGTERM instead of SIGKILL every
  line is in the topic and in the output exactly once, in order.
* Connectors resume after a graceful restart, and `weir group describe connect-<sink>` shows
  the sink's lag, which falls to 0.
* Connectors declared in weir.toml (`[connectors.<name>]`, quoted and dotted keys) run at
  start and the file wins over REST changes at the next start; a bad declaration stops
  `weir up` with an error naming the connector.

Offsets are flushed every 500 ms here (`WEIR_CONNECT__OFFSET_FLUSH_INTERVAL_MS`, default 10 s)
so that SIGKILLs land both before and after flushes.

A source record's value is the line as it was read (what Kafka Connect's StringConverter
writes); a JSON string or a JsonConverter envelope carrying the line is accepted too
(record_line), since the converter is not what these tests are about.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest

from helpers import (
    FAST_GROUPS,
    ck_admin,
    ck_consume_partition,
    ck_watermarks,
    create_topic,
    describe_process,
    free_port,
    parse_group_describe,
    run_cli,
    run_weir,
    wait_until,
)

SOURCE_CLASS = "org.apache.kafka.connect.file.FileStreamSourceConnector"
SINK_CLASS = "org.apache.kafka.connect.file.FileStreamSinkConnector"
FLUSH_MS = 500
CONNECT_ENV = {**FAST_GROUPS, "WEIR_CONNECT__OFFSET_FLUSH_INTERVAL_MS": str(FLUSH_MS)}
WAIT = 30.0  # seconds: the bound of every poll loop
KILLS = 5
RATE = 400  # lines per second from the background writer


# ---------------------------------------------------------------------------
# Starting a broker, calling the REST API
# ---------------------------------------------------------------------------


def start_connect(start_broker, tmp_path: Path, env=None, args=()):
    """A broker with fast offset flushes and its own (empty) plugins directory."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    return start_broker(env={**CONNECT_ENV, **(env or {})}, args=["--plugins-dir", str(plugins), *args])


def call(broker, method: str, path: str, body=None, *, status: int, headers=None):
    """One REST call that must answer `status`; returns (headers, payload).
    Whatever has a body must say it is JSON."""
    code, answer_headers, payload = broker.rest(method, path, body, headers)
    assert code == status, f"{method} {path}: expected HTTP {status}, got {code}: {payload!r}"
    if payload is not None:
        assert answer_headers.get("content-type", "").startswith("application/json"), (
            f"{method} {path}: Content-Type {answer_headers.get('content-type')!r} for {payload!r}"
        )
    return answer_headers, payload


def get(broker, path: str):
    return call(broker, "GET", path, status=200)[1]


def error(broker, method: str, path: str, body=None, *, status: int, headers=None, mentions=()) -> str:
    """A call that must fail with `status` and the JSON error body; returns its message."""
    _, payload = call(broker, method, path, body, status=status, headers=headers)
    assert isinstance(payload, dict) and set(payload) == {"error_code", "message"}, (
        f"{method} {path}: error body {payload!r}"
    )
    assert payload["error_code"] == status, f"{method} {path}: {payload!r}"
    message = payload["message"]
    assert isinstance(message, str) and message.strip(), f"{method} {path}: {payload!r}"
    for word in mentions:
        assert word in message, f"{method} {path}: the message should name {word!r}: {message!r}"
    return message


def not_found(name: str) -> dict:
    return {"error_code": 404, "message": f"Connector {name} not found"}


def source_config(path: Path, topic: str, **extra) -> dict:
    return {"connector.class": "FileStreamSource", "file": str(path), "topic": topic, **extra}


def sink_config(path: Path, topics: str, **extra) -> dict:
    return {"connector.class": "FileStreamSink", "file": str(path), "topics": topics, **extra}


def create(broker, name: str, config: dict) -> dict:
    _, info = call(broker, "POST", "/connectors", {"name": name, "config": config}, status=201)
    return info


def listed(broker) -> list:
    names = get(broker, "/connectors")
    assert isinstance(names, list), names
    return sorted(names)


def check_status_shape(status: dict, name: str, kind: str) -> None:
    assert status["name"] == name, status
    assert status["type"] == kind, status
    connector = status["connector"]
    assert isinstance(connector["state"], str), status
    assert isinstance(connector["worker_id"], str) and connector["worker_id"], status
    assert isinstance(status["tasks"], list), status
    for task in status["tasks"]:
        assert isinstance(task["id"], int) and isinstance(task["state"], str), status
        assert task["worker_id"] == connector["worker_id"], f"one worker runs everything: {status}"


def wait_state(broker, name: str, state: str, timeout: float = WAIT) -> dict:
    """Poll the status until the connector and its tasks are all in `state`.
    RUNNING and PAUSED need the one task; a STOPPED connector may list no
    tasks (Kafka Connect drops a stopped connector's tasks)."""

    def probe():
        status = get(broker, f"/connectors/{name}/status")
        states = [status["connector"]["state"]] + [t["state"] for t in status["tasks"]]
        assert all(s == state for s in states), f"want {state}: {status}"
        if state != "STOPPED":
            assert [t["id"] for t in status["tasks"]] == [0], f"want one task: {status}"
        return status

    return wait_until(probe, timeout=timeout, interval=0.2, what=f"connector {name} {state}")


# ---------------------------------------------------------------------------
# Files and topics
# ---------------------------------------------------------------------------


def line(prefix: str, i: int) -> str:
    """Input line number `i`: unique, of varying length, not only ASCII."""
    return f"{prefix}-{i:06d} héllo wörld {'~' * (i % 23)}"


def append_lines(path: Path, lines: list) -> None:
    """Append whole lines with as few write(2) calls as the kernel allows."""
    data = "".join(f"{x}\n" for x in lines).encode()
    with open(path, "ab", buffering=0) as f:
        while data:
            data = data[f.write(data) :]


def complete_lines(path: Path) -> list:
    """The newline-terminated lines of `path` (a line still being written is left out)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    parts = data.split(b"\n")
    parts.pop()  # after the last newline: nothing, or a line not finished yet
    return [p.decode("utf-8", errors="replace") for p in parts]


def record_line(value) -> str:
    """The input line a source record carries (see the module docstring)."""
    text = (value or b"").decode("utf-8", errors="replace")
    if text.startswith(("{", '"')):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        if isinstance(decoded, dict) and isinstance(decoded.get("payload"), str):
            return decoded["payload"]
        if isinstance(decoded, str):
            return decoded
    return text


def topic_lines(bootstrap: str, topic: str) -> list:
    """Every record of `topic` as its line, partition by partition, in offset order."""
    meta = ck_admin(bootstrap).list_topics(timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    out = []
    for partition in sorted(meta.partitions):
        out += [record_line(r.value) for r in ck_consume_partition(bootstrap, topic, partition, 0, timeout=60)]
    return out


def high_watermark(bootstrap: str, topic: str) -> int:
    return ck_watermarks(bootstrap, topic, 0)[1]


def first_difference(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def wait_output(path: Path, expected: list, timeout: float = WAIT) -> None:
    """Wait until the output file holds exactly the lines `expected`."""

    def probe():
        got = complete_lines(path)
        assert got == expected, (
            f"{len(got)} of {len(expected)} lines, first difference at {first_difference(got, expected)}, "
            f"last lines {got[-2:]!r}"
        )
        return True

    wait_until(probe, timeout=timeout, interval=0.2, what=f"exactly {len(expected)} lines in {path.name}")


def group_rows(weir_bin: str, broker, group: str, topic: str) -> dict:
    """{partition: (CURRENT-OFFSET, LOG-END-OFFSET, LAG)} of `weir group describe GROUP` for `topic`."""
    result = run_weir(weir_bin, broker.bootstrap, "group", "describe", group)
    assert result.returncode == 0, describe_process(result)
    rows = [r for r in parse_group_describe(result.stdout, group) if r["TOPIC"] == topic]
    assert rows, f"no row for topic {topic}:\n{result.stdout}"
    return {r["PARTITION"]: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for r in rows}


def wait_lag(weir_bin: str, broker, group: str, topic: str, end: int) -> None:
    """Wait until the group has committed `end` on the topic's one partition: lag 0."""

    def probe():
        rows = group_rows(weir_bin, broker, group, topic)
        assert rows == {0: (end, end, 0)}, f"want {{0: ({end}, {end}, 0)}}, have {rows}"
        return rows

    wait_until(probe, timeout=WAIT, interval=0.5, what=f"lag 0 at offset {end} for {group}")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# a. The REST contract
# ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_rest_api_contract(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    topic = "contract"
    create_topic(broker.bootstrap, topic, 1)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src_file = tmp_path / "in" / "input.txt"
    src_file.write_text("")
    sink_file = tmp_path / "out" / "output.txt"
    sink_file2 = tmp_path / "out" / "output2.txt"

    # GET /: the worker and the cluster it belongs to.
    root = get(broker, "/")
    assert set(root) >= {"version", "commit", "kafka_cluster_id"}, root
    assert isinstance(root["version"], str) and root["version"], root
    assert isinstance(root["commit"], str), root
    cluster_id = ck_admin(broker.bootstrap).list_topics(timeout=10).cluster_id
    assert root["kafka_cluster_id"] == cluster_id, f"{root} vs Metadata's cluster id {cluster_id!r}"

    # GET /connector-plugins: both file connectors under their Kafka class names.
    plugins = get(broker, "/connector-plugins")
    assert isinstance(plugins, list), plugins
    for p in plugins:
        assert set(p) >= {"class", "type", "version"}, p
        assert isinstance(p["class"], str) and p["type"] in ("source", "sink"), p
        assert isinstance(p["version"], str) and p["version"], p
    kinds = {p["class"]: p["type"] for p in plugins}
    assert kinds.get(SOURCE_CLASS) == "source" and kinds.get(SINK_CLASS) == "sink", plugins

    assert get(broker, "/connectors") == []

    # POST /connectors: 201, Location, the connector's info.
    src_cfg = source_config(src_file, topic, **{"batch.size": "100"})
    headers, info = call(broker, "POST", "/connectors", {"name": "src", "config": src_cfg}, status=201)
    assert urllib.parse.urlparse(headers.get("location", "")).path == "/connectors/src", headers
    assert set(info) == {"name", "config", "tasks", "type"}, info
    assert info["name"] == "src" and info["type"] == "source", info
    assert {k: info["config"].get(k) for k in src_cfg} == src_cfg, info
    assert info["config"].get("name", "src") == "src", info
    # Kafka Connect may answer before the task configs exist: [] or the one task.
    assert info["tasks"] in ([], [{"connector": "src", "task": 0}]), info

    # 409 for a name that exists; nothing changes.
    error(broker, "POST", "/connectors", {"name": "src", "config": src_cfg}, status=409, mentions=["src"])

    # 400 for bad configs, the message naming the key; none of them is created.
    bad = {
        "no-class": {k: v for k, v in src_cfg.items() if k != "connector.class"},
        "unknown-class": {**src_cfg, "connector.class": "com.example.NoSuchConnector"},
        "bad-batch": {**src_cfg, "batch.size": "lots"},
        "no-target": {k: v for k, v in src_cfg.items() if k != "topic"},
    }
    keys = {"no-class": "connector.class", "unknown-class": "connector.class", "bad-batch": "batch.size", "no-target": "topic"}
    for name, cfg in bad.items():
        error(broker, "POST", "/connectors", {"name": name, "config": cfg}, status=400, mentions=[keys[name]])
    # 415 when the body is not said to be JSON, 400 when it is not JSON.
    error(broker, "POST", "/connectors", json.dumps({"name": "as-text", "config": src_cfg}), status=415,
          headers={"Content-Type": "text/plain"})  # fmt: skip
    error(broker, "POST", "/connectors", b'{"name": "broken-json", "config": {', status=400)
    for name in [*bad, "as-text", "broken-json"]:
        _, payload = call(broker, "GET", f"/connectors/{name}", status=404)
        assert payload == not_found(name), payload
    assert listed(broker) == ["src"]

    # GET /connectors/{name}, /config; the task shows up in the info.
    def src_info():
        got = get(broker, "/connectors/src")
        assert got["tasks"] == [{"connector": "src", "task": 0}], got
        return got

    info = wait_until(src_info, timeout=WAIT, what="src's task in its info")
    assert set(info) == {"name", "config", "tasks", "type"} and info["type"] == "source", info
    config = get(broker, "/connectors/src/config")
    assert config == info["config"], (config, info)
    assert {k: config.get(k) for k in src_cfg} == src_cfg, config
    assert all(isinstance(v, str) for v in config.values()), config

    # Unknown connectors: 404 with the JSON error everywhere.
    _, payload = call(broker, "GET", "/connectors/nope", status=404)
    assert payload == not_found("nope"), payload
    for method, path in [
        ("GET", "/connectors/nope/config"),
        ("GET", "/connectors/nope/status"),
        ("GET", "/connectors/nope/tasks"),
        ("PUT", "/connectors/nope/pause"),
        ("PUT", "/connectors/nope/resume"),
        ("PUT", "/connectors/nope/stop"),
        ("DELETE", "/connectors/nope"),
    ]:
        error(broker, method, path, status=404, mentions=["nope"])

    # PUT /connectors/{name}/config: 201 when it creates, 200 when it updates.
    sink_cfg = {"connector.class": SINK_CLASS, "file": str(sink_file), "topics": topic}
    _, info = call(broker, "PUT", "/connectors/sink/config", sink_cfg, status=201)
    assert set(info) == {"name", "config", "tasks", "type"}, info
    assert info["name"] == "sink" and info["type"] == "sink", info
    assert {k: info["config"].get(k) for k in sink_cfg} == sink_cfg, info
    sink_cfg2 = {**sink_cfg, "file": str(sink_file2)}
    _, info = call(broker, "PUT", "/connectors/sink/config", sink_cfg2, status=200)
    assert info["name"] == "sink" and info["type"] == "sink", info
    assert info["config"].get("file") == str(sink_file2), info
    assert get(broker, "/connectors/sink/config").get("file") == str(sink_file2)
    error(broker, "PUT", "/connectors/sink/config", {**sink_cfg, "connector.class": "NoSuchSink"}, status=400,
          mentions=["connector.class"])  # fmt: skip
    assert get(broker, "/connectors/sink/config").get("file") == str(sink_file2), "a refused update changed nothing"
    assert listed(broker) == ["sink", "src"]

    # Status of connectors and tasks.
    status = wait_state(broker, "src", "RUNNING")
    check_status_shape(status, "src", "source")
    check_status_shape(wait_state(broker, "sink", "RUNNING"), "sink", "sink")
    tasks = get(broker, "/connectors/src/tasks")
    assert isinstance(tasks, list) and len(tasks) == 1, tasks
    assert tasks[0]["id"] == {"connector": "src", "task": 0}, tasks
    assert isinstance(tasks[0]["config"], dict), tasks
    assert all(isinstance(v, str) for v in tasks[0]["config"].values()), tasks
    assert tasks[0]["config"].get("file") == str(src_file) and tasks[0]["config"].get("topic") == topic, tasks
    task_status = get(broker, "/connectors/src/tasks/0/status")
    assert task_status["id"] == 0 and task_status["state"] == "RUNNING", task_status
    assert task_status["worker_id"] == status["connector"]["worker_id"], (task_status, status)
    error(broker, "GET", "/connectors/src/tasks/7/status", status=404)

    # ?expand=status, ?expand=info, both.
    expanded = get(broker, "/connectors?expand=status")
    assert set(expanded) == {"src", "sink"}, expanded
    for name, kind in (("src", "source"), ("sink", "sink")):
        assert set(expanded[name]) == {"status"}, expanded
        check_status_shape(expanded[name]["status"], name, kind)
    expanded = get(broker, "/connectors?expand=info")
    assert set(expanded) == {"src", "sink"}, expanded
    for name, kind in (("src", "source"), ("sink", "sink")):
        assert set(expanded[name]) == {"info"}, expanded
        assert expanded[name]["info"]["name"] == name and expanded[name]["info"]["type"] == kind, expanded
        assert expanded[name]["info"]["config"] == get(broker, f"/connectors/{name}/config"), expanded
    expanded = get(broker, "/connectors?expand=status&expand=info")
    assert set(expanded) == {"src", "sink"}, expanded
    for name, kind in (("src", "source"), ("sink", "sink")):
        assert set(expanded[name]) == {"status", "info"}, expanded
        check_status_shape(expanded[name]["status"], name, kind)
        assert expanded[name]["info"]["name"] == name, expanded

    # The source moves lines while running ...
    append_lines(src_file, ["first"])
    wait_until(lambda: "first" in topic_lines(broker.bootstrap, topic), timeout=WAIT, what="the first line in the topic")

    # ... not while paused (202), and again once resumed (202).
    _, payload = call(broker, "PUT", "/connectors/src/pause", status=202)
    assert payload is None, payload
    wait_state(broker, "src", "PAUSED")
    high = high_watermark(broker.bootstrap, topic)
    append_lines(src_file, ["while-paused"])
    time.sleep(2.0)
    assert high_watermark(broker.bootstrap, topic) == high, "a paused source produced"
    _, payload = call(broker, "PUT", "/connectors/src/resume", status=202)
    assert payload is None, payload
    wait_state(broker, "src", "RUNNING")
    wait_until(lambda: "while-paused" in topic_lines(broker.bootstrap, topic), timeout=WAIT, what="the line after resume")

    # PUT /stop: 204, STOPPED; resume brings it back.
    _, payload = call(broker, "PUT", "/connectors/src/stop", status=204)
    assert payload is None, payload
    status = wait_state(broker, "src", "STOPPED")
    check_status_shape(status, "src", "source")
    call(broker, "PUT", "/connectors/src/resume", status=202)
    wait_state(broker, "src", "RUNNING")

    # Errors are JSON for paths and methods that do not exist too.
    error(broker, "GET", "/no-such-path", status=404)
    error(broker, "DELETE", "/connector-plugins", status=405)

    # DELETE: 204, then 404; the name can be used again.
    _, payload = call(broker, "DELETE", "/connectors/sink", status=204)
    assert payload is None, payload
    _, payload = call(broker, "GET", "/connectors/sink", status=404)
    assert payload == not_found("sink"), payload
    error(broker, "GET", "/connectors/sink/status", status=404, mentions=["sink"])
    assert listed(broker) == ["src"]
    call(broker, "DELETE", "/connectors/src", status=204)
    assert get(broker, "/connectors") == []
    assert get(broker, "/connectors?expand=status") == {}
    info = create(broker, "src", src_cfg)
    assert info["name"] == "src", info
    wait_state(broker, "src", "RUNNING")


# ---------------------------------------------------------------------------
# b. The pipeline across SIGKILL / SIGTERM
# ---------------------------------------------------------------------------


class LineWriter:
    """Appends numbered lines to a file at RATE lines/s, in chunks of 1 to 40 lines, on its own
    thread until stopped."""

    def __init__(self, path: Path, prefix: str, rng: random.Random):
        self.path = path
        self.prefix = prefix
        self.rng = rng
        self.count = 0
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="line-writer", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                n = self.rng.randint(1, 40)
                append_lines(self.path, [line(self.prefix, i) for i in range(self.count, self.count + n)])
                self.count += n
                self._stop.wait(n / RATE)
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "writer thread did not stop"
        if self._error is not None:
            raise self._error
        return self.count


def discontinuities(indices: list) -> list:
    """Positions where the sequence does not go on with the next index: (position, previous, next)."""
    return [(j, indices[j - 1], indices[j]) for j in range(1, len(indices)) if indices[j] != indices[j - 1] + 1]


def first_occurrences(lines: list) -> list:
    """`lines` without repeats, each where it first appears."""
    seen: set = set()
    out = []
    for x in lines:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# With a chain: the source inserts a header and runs a Rust WebAssembly transform (identity,
# installed in the plugins directory), the sink drops the header: records keep their values, so
# the same checks hold, through the runtime's structured path.
SOURCE_CHAIN = {
    "transforms": "hdr,wasm",
    "transforms.hdr.type": "org.apache.kafka.connect.transforms.InsertHeader",
    "transforms.hdr.header": "via",
    "transforms.hdr.value.literal": "weir",
    "transforms.wasm.type": "identity",
}
SINK_CHAIN = {
    "transforms": "drop",
    "transforms.drop.type": "org.apache.kafka.connect.transforms.DropHeaders",
    "transforms.drop.headers": "via",
}


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    "crash,chain",
    [
        pytest.param(True, False, id="sigkill"),
        pytest.param(False, False, id="sigterm"),
        pytest.param(True, True, id="sigkill-with-transforms"),
    ],
)
def test_file_pipeline_across_restarts(weir_bin, start_broker, tmp_path, crash, chain):
    broker = start_connect(start_broker, tmp_path)
    if chain:
        installed = run_cli(weir_bin, "plugin", "install", str(rust_guest(weir_bin, "identity")),
                            "--dir", str(tmp_path / "plugins"))  # fmt: skip
        assert installed.returncode == 0, describe_process(installed)
    topic = "pipeline"
    create_topic(broker.bootstrap, topic, 1)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src_file = tmp_path / "in" / "input.txt"
    src_file.write_text("")
    sink_file = tmp_path / "out" / "output.txt"
    create(broker, "pipe-src", source_config(src_file, topic, **{"batch.size": "50", **(SOURCE_CHAIN if chain else {})}))
    create(broker, "pipe-sink", sink_config(sink_file, topic, **(SINK_CHAIN if chain else {})))
    wait_state(broker, "pipe-src", "RUNNING")
    wait_state(broker, "pipe-sink", "RUNNING")

    seed = int(os.environ.get("WEIR_E2E_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"random seed {seed} (set WEIR_E2E_SEED to replay)")
    writer = LineWriter(src_file, "pipe", random.Random(rng.random()))
    writer.start()
    try:
        for round_no in range(KILLS):
            # weir must be up and moving lines all the way to the output before each restart.
            high0 = high_watermark(broker.bootstrap, topic)
            out0 = len(complete_lines(sink_file))
            wait_until(
                lambda: high_watermark(broker.bootstrap, topic) > high0 and len(complete_lines(sink_file)) > out0,
                timeout=WAIT, interval=0.1, what=f"round {round_no}: the topic and the output growing",
            )  # fmt: skip
            time.sleep(rng.uniform(0.1, 1.5))  # before or after an offset flush (every 500 ms)
            print(
                f"round {round_no}: {writer.count} lines written, topic at {high_watermark(broker.bootstrap, topic)}, "
                f"output {len(complete_lines(sink_file))} lines; {'SIGKILL' if crash else 'SIGTERM'}"
            )
            if crash:
                broker.kill9()
                time.sleep(rng.uniform(0.0, 0.5))  # the writer goes on while weir is down
                broker.start()
            else:
                broker.restart()  # SIGTERM, which must exit 0
            # Back from connect-configs, without being created again.
            wait_until(lambda: listed(broker) == ["pipe-sink", "pipe-src"], timeout=WAIT, what="both connectors listed")
        time.sleep(1.0)
    finally:
        total = writer.stop()
    assert total >= RATE, f"the writer wrote only {total} lines"
    expected = [line("pipe", i) for i in range(total)]
    expected_set = set(expected)
    index = {x: i for i, x in enumerate(expected)}

    # Catch up: every line in the output, then the output as long as the topic.
    wait_until(
        lambda: len(set(complete_lines(sink_file)) & expected_set) == total,
        timeout=60, interval=0.5, what=f"all {total} lines in the output",
    )  # fmt: skip
    in_topic = topic_lines(broker.bootstrap, topic)
    wait_until(lambda: len(complete_lines(sink_file)) >= len(in_topic), timeout=WAIT, what="the output as long as the topic")
    time.sleep(2 * FLUSH_MS / 1000)
    in_topic = topic_lines(broker.bootstrap, topic)
    out = complete_lines(sink_file)
    assert sink_file.read_bytes().endswith(b"\n"), "the output ends with a partial line"

    # Nothing but input lines, none lost, none torn.
    assert not [x for x in in_topic if x not in expected_set], f"foreign records in the topic: {[x for x in in_topic if x not in expected_set][:5]}"
    assert not [x for x in out if x not in expected_set], f"foreign lines in the output: {[x for x in out if x not in expected_set][:5]}"
    assert not expected_set - set(in_topic), f"{len(expected_set - set(in_topic))} lines never reached the topic"
    assert not expected_set - set(out), f"{len(expected_set - set(out))} lines never reached the output"
    topic_counts, out_counts = Counter(in_topic), Counter(out)
    duplicated = {x: c for x, c in topic_counts.items() if c > 1}
    print(f"{total} lines; the topic holds {len(in_topic)} records ({len(duplicated)} lines more than once), the output {len(out)} lines")

    if crash:
        # The source is at least once: a line shows up again only when re-read from a committed
        # position after a crash, so the topic goes on in order except for at most one step back
        # per SIGKILL.
        steps = discontinuities([index[x] for x in in_topic])
        assert index[in_topic[0]] == 0, f"the topic starts at {in_topic[0]!r}"
        assert all(nxt <= prev for _, prev, nxt in steps), f"the topic skips ahead: {steps[:5]}"
        assert len(steps) <= KILLS, f"{len(steps)} re-reads for {KILLS} SIGKILLs: {steps[:10]}"
        assert first_occurrences(in_topic) == expected, "the topic's lines are out of order"
        # The sink is exactly once: a line is in the output as often as in the topic.
        more = {x: (c, topic_counts[x]) for x, c in out_counts.items() if c > 1 and c > topic_counts[x]}
        assert not more, f"lines in the output more often than in the topic (output, topic): {list(more.items())[:5]}"
        assert out == in_topic, (
            f"the output is not the topic record for record: {len(out)} lines vs {len(in_topic)} records, "
            f"first difference at {first_difference(out, in_topic)}"
        )
    else:
        # SIGTERM flushes everything: each line exactly once, in order, in both.
        assert not duplicated, f"{len(duplicated)} lines more than once in the topic, e.g. {list(duplicated.items())[:5]}"
        assert in_topic == expected, f"the topic is not the input line for line (from {first_difference(in_topic, expected)})"
        assert out == expected, f"the output is not the input line for line (from {first_difference(out, expected)})"
    if chain:
        # The source's chain ran on every record: each carries the header it inserted.
        records = ck_consume_partition(broker.bootstrap, topic, 0, 0, timeout=60)
        assert all(dict(r.headers or []).get("via") == b"weir" for r in records), records[0].headers


# ---------------------------------------------------------------------------
# c. Resuming after a restart, and the sink group's lag
# ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_connectors_resume_after_restart(weir_bin, start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    topic, src, sink = "resume", "resume-src", "resume-sink"
    group = f"connect-{sink}"
    create_topic(broker.bootstrap, topic, 1)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src_file = tmp_path / "in" / "input.txt"
    src_file.write_text("")
    sink_file = tmp_path / "out" / "output.txt"
    lines = [line("resume", i) for i in range(350)]
    create(broker, src, source_config(src_file, topic))
    create(broker, sink, sink_config(sink_file, topic))
    wait_state(broker, src, "RUNNING")
    wait_state(broker, sink, "RUNNING")
    append_lines(src_file, lines[:100])
    wait_output(sink_file, lines[:100])

    code = broker.stop()
    assert code == 0, f"SIGTERM: exit code {code}\n{broker.log_tail()}"
    broker.start()
    wait_until(lambda: listed(broker) == [sink, src], timeout=WAIT, what="both connectors listed after the restart")
    wait_state(broker, src, "RUNNING")
    wait_state(broker, sink, "RUNNING")
    append_lines(src_file, lines[100:300])
    wait_output(sink_file, lines[:300])
    assert topic_lines(broker.bootstrap, topic) == lines[:300]
    wait_lag(weir_bin, broker, group, topic, 300)

    # Paused, the sink lags behind the source by what it has not written ...
    call(broker, "PUT", f"/connectors/{sink}/pause", status=202)
    wait_state(broker, sink, "PAUSED")
    append_lines(src_file, lines[300:350])
    wait_until(lambda: high_watermark(broker.bootstrap, topic) == 350, timeout=WAIT, what="the topic at 350")
    time.sleep(2 * FLUSH_MS / 1000)
    assert group_rows(weir_bin, broker, group, topic) == {0: (300, 350, 50)}
    assert complete_lines(sink_file) == lines[:300], "a paused sink wrote"
    # ... and the lag falls to 0 once it is resumed.
    call(broker, "PUT", f"/connectors/{sink}/resume", status=202)
    wait_state(broker, sink, "RUNNING")
    wait_output(sink_file, lines)
    wait_lag(weir_bin, broker, group, topic, 350)


# ---------------------------------------------------------------------------
# d. Connectors declared in weir.toml
# ---------------------------------------------------------------------------


def toml_str(value) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(str(value))


@pytest.mark.timeout(180)
def test_connectors_declared_in_weir_toml(start_broker, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "plugins").mkdir()
    src_file = tmp_path / "in" / "input.txt"
    src_file.write_text("")
    sink_file = tmp_path / "out" / "output.txt"
    file_http_port = free_port()
    config = tmp_path / "weir.toml"
    # Quoted keys for the source, TOML dotted keys for the sink; a number for batch.size.
    config.write_text(
        f"""
[http]
# The harness's --http-listen flag wins over this.
listen = {toml_str(f"127.0.0.1:{file_http_port}")}

[connect]
offset_flush_interval_ms = {FLUSH_MS}

[connectors.toml-src]
"connector.class" = "FileStreamSource"
"file" = {toml_str(src_file)}
"topic" = "declared"
"batch.size" = 50

[connectors.toml-sink]
connector.class = {toml_str(SINK_CLASS)}
file = {toml_str(sink_file)}
topics = "declared"
"""
    )
    broker = start_broker(env=FAST_GROUPS, args=["--config", str(config), "--plugins-dir", str(tmp_path / "plugins")])
    assert not accepts(file_http_port), "the REST API listens on [http] listen although --http-listen was given"

    wait_until(lambda: listed(broker) == ["toml-sink", "toml-src"], timeout=WAIT, what="the declared connectors listed")
    src_cfg = get(broker, "/connectors/toml-src/config")
    assert src_cfg.get("connector.class") == "FileStreamSource", src_cfg
    assert src_cfg.get("file") == str(src_file) and src_cfg.get("topic") == "declared", src_cfg
    assert src_cfg.get("batch.size") == "50", f"numbers become strings: {src_cfg}"
    sink_cfg = get(broker, "/connectors/toml-sink/config")
    assert sink_cfg.get("connector.class") == SINK_CLASS, f"dotted keys are Kafka's dotted names: {sink_cfg}"
    assert sink_cfg.get("file") == str(sink_file) and sink_cfg.get("topics") == "declared", sink_cfg
    assert "connector" not in sink_cfg and "class" not in sink_cfg, sink_cfg
    assert get(broker, "/connectors/toml-src")["type"] == "source"
    assert get(broker, "/connectors/toml-sink")["type"] == "sink"
    wait_state(broker, "toml-src", "RUNNING")
    wait_state(broker, "toml-sink", "RUNNING")
    lines = [line("toml", i) for i in range(60)]
    append_lines(src_file, lines[:30])
    wait_output(sink_file, lines[:30])

    # A REST change lasts until the next start, where the file wins.
    call(broker, "PUT", "/connectors/toml-src/config", {**src_cfg, "batch.size": "7"}, status=200)
    assert get(broker, "/connectors/toml-src/config").get("batch.size") == "7"
    broker.restart()
    wait_until(lambda: listed(broker) == ["toml-sink", "toml-src"], timeout=WAIT, what="the declared connectors listed")
    wait_until(
        lambda: get(broker, "/connectors/toml-src/config").get("batch.size") == "50",
        timeout=WAIT, what="the file's batch.size back after the restart",
    )  # fmt: skip
    wait_state(broker, "toml-src", "RUNNING")
    wait_state(broker, "toml-sink", "RUNNING")
    append_lines(src_file, lines[30:])
    wait_output(sink_file, lines)


@pytest.mark.parametrize(
    "declaration, problem",
    [
        pytest.param('"connector.class" = "NoSuchConnector"\nfile = {file}\ntopic = "t"', "connector.class", id="unknown-class"),
        pytest.param('"connector.class" = "FileStreamSource"\nfile = {file}\ntopic = "t"\n"batch.size" = "lots"', "batch.size", id="bad-value"),
    ],
)  # fmt: skip
def test_bad_declaration_stops_weir_up(weir_bin, tmp_path, declaration, problem):
    (tmp_path / "plugins").mkdir()
    config = tmp_path / "weir.toml"
    config.write_text(f"[connectors.broken-one]\n{declaration.format(file=toml_str(tmp_path / 'input.txt'))}\n")
    args = [
        "up", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
        "--http-listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"),
        "--plugins-dir", str(tmp_path / "plugins"),
    ]  # fmt: skip
    try:
        result = run_cli(weir_bin, *args, timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"weir up kept running for {WAIT}s with a bad connector declaration", pytrace=False)
    assert result.returncode != 0, describe_process(result)
    assert "broken-one" in result.stderr, "the error names the connector\n" + describe_process(result)
    assert problem in result.stderr, f"the error names {problem!r}\n" + describe_process(result)


# ---------------------------------------------------------------------------
# Converters and the transform chain
# ---------------------------------------------------------------------------


def rust_guest(weir_bin: str, name: str) -> Path:
    """A Rust guest fixture of weir-host, as its build script built it."""
    import glob

    pattern = os.path.join(
        os.path.dirname(weir_bin), "build", "weir-host-*", "out", "guests", "wasm32-wasip2", "release", f"{name}.wasm"
    )
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        pytest.fail(f"guest component {name}.wasm not found ({pattern})", pytrace=False)
    return Path(found[-1])


@pytest.mark.timeout(180)
def test_converters_kafka_transforms_and_a_wasm_transform(weir_bin, start_broker, tmp_path):
    """FileStreamSource with JsonConverter (schemas on) writes Kafka's envelopes; the sink
    reads them with JsonConverter, hoists the line into a struct, inserts fields, masks one,
    filters records by a predicate, and a Rust WebAssembly transform (json-rewrite, installed
    in the plugins directory) renames a field: the file holds the JSON rows."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    installed = run_cli(weir_bin, "plugin", "install", str(rust_guest(weir_bin, "json_rewrite")), "--dir", str(plugins))
    assert installed.returncode == 0, describe_process(installed)
    broker = start_connect(start_broker, tmp_path)
    src_file, out_file = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i}" for i in range(40)]
    append_lines(src_file, lines)
    create(broker, "json-src", source_config(
        src_file, "chain",
        **{"value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "true"},
    ))  # fmt: skip
    wait_until(lambda: high_watermark(broker.bootstrap, "chain") == len(lines), timeout=WAIT, what="40 records")
    first = ck_consume_partition(broker.bootstrap, "chain", 0, 0, timeout=30)[0]
    assert json.loads(first.value) == {"schema": {"type": "string", "optional": False}, "payload": "line 0"}

    sink = sink_config(out_file, "chain", **{
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "transforms": "skip,hoist,insert,mask,rename",
        "transforms.skip.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.skip.predicate": "isLine",
        "transforms.skip.negate": "true",
        "predicates": "isLine",
        # Filter applies where the predicate does not match (negate): here, nowhere.
        "predicates.isLine.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isLine.pattern": "cha.*",
        "transforms.hoist.type": "org.apache.kafka.connect.transforms.HoistField$Value",
        "transforms.hoist.field": "line",
        "transforms.insert.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.insert.static.field": "via",
        "transforms.insert.static.value": "weir",
        "transforms.insert.offset.field": "offset",
        "transforms.insert.topic.field": "topic",
        "transforms.mask.type": "org.apache.kafka.connect.transforms.MaskField$Value",
        "transforms.mask.fields": "topic",
        "transforms.rename.type": "json-rewrite",
        "transforms.rename.from": "via",
        "transforms.rename.to": "through",
    })  # fmt: skip
    create(broker, "json-sink", sink)

    def rows():
        got = [json.loads(x) for x in complete_lines(out_file)]
        assert len(got) == len(lines), f"{len(got)} rows"
        return got

    got = wait_until(rows, timeout=WAIT, what="every row in the output")
    assert got[0] == {"line": "line 0", "through": "weir", "offset": 0, "topic": ""}, got[0]
    assert [r["line"] for r in got] == lines
    assert [r["offset"] for r in got] == list(range(len(lines)))
    status = wait_state(broker, "json-sink", "RUNNING")
    assert status["tasks"][0]["state"] == "RUNNING", status

    # The plugins list knows Kafka's transforms and predicates, and the installed one.
    everything = get(broker, "/connector-plugins?connectorsOnly=false")
    classes = {p["class"]: p["type"] for p in everything}
    assert classes["org.apache.kafka.connect.transforms.InsertField$Value"] == "transformation"
    assert classes["org.apache.kafka.connect.transforms.TimestampConverter$Key"] == "transformation"
    assert classes["org.apache.kafka.connect.transforms.predicates.TopicNameMatches"] == "predicate"
    assert classes["json-rewrite"] == "transformation"
    assert all(p["type"] in ("source", "sink") for p in get(broker, "/connector-plugins"))

    # A sink whose chain drops every record still commits what it read: its lag reaches 0.
    drop_out = tmp_path / "dropped.txt"
    create(broker, "drop-sink", sink_config(drop_out, "chain", **{
        "transforms": "all",
        "transforms.all.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.all.predicate": "isLine",
        "predicates": "isLine",
        "predicates.isLine.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isLine.pattern": "chain",
    }))  # fmt: skip
    wait_lag(weir_bin, broker, "connect-drop-sink", "chain", len(lines))
    assert complete_lines(drop_out) == []

    # A chain that cannot work is refused, naming the key.
    bad = {**sink, "transforms.rename.from": None}
    bad = {k: v for k, v in bad.items() if v is not None}
    error(broker, "POST", "/connectors", {"name": "bad-chain", "config": bad}, status=400, mentions=["from"])
    bad = {**sink, "transforms.mask.type": "org.apache.kafka.connect.transforms.Nope$Value"}
    error(broker, "POST", "/connectors", {"name": "bad-chain", "config": bad}, status=400,
          mentions=["transforms.mask.type"])  # fmt: skip
    bad = {**sink, "value.converter.schemas.enable": "sometimes"}
    error(broker, "POST", "/connectors", {"name": "bad-chain", "config": bad}, status=400,
          mentions=["value.converter.schemas.enable"])  # fmt: skip


def ordered(value):
    """A JSON value with every object as its list of (name, value) members, in order."""
    if isinstance(value, (str, bytes)):
        return json.loads(value, object_pairs_hook=list)
    return json.loads(json.dumps(value), object_pairs_hook=list)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("schemas", ["false", "true"], ids=["schemaless", "envelope"])
def test_a_wasm_transform_on_a_json_source_writes_json_objects(weir_bin, start_broker, tmp_path, schemas):
    """A source whose values are JSON (the file source with weir.value.format=json) and
    JsonConverter: what a WebAssembly transform returns is JSON again, so the topic holds the
    objects, not JSON strings carrying them (a regression: "{\\"id\\":1}" was written).
    The chain is json-rewrite (first -> given), InsertField$Value (static via=weir),
    json-rewrite again (via -> through): a wasm step's output feeds a Kafka transform and,
    last, the converter. A line whose JSON is not an object is a bad record for json-rewrite:
    with errors.tolerance=all it goes to the dead letter queue as the line read, at the
    TRANSFORMATION stage."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    installed = run_cli(weir_bin, "plugin", "install", str(rust_guest(weir_bin, "json_rewrite")), "--dir", str(plugins))
    assert installed.returncode == 0, describe_process(installed)
    broker = start_connect(start_broker, tmp_path)

    lines, expected, bad = [], [], {}
    for i in range(24):
        if i in (3, 11, 19):
            bad[i] = ['[1, {"first": 2}]', '"héllo wörld"', "42"][len(bad)]
            lines.append(bad[i])
            continue
        doc = {"n": i, "first": f"ädä-{i}", "tags": ["x", i, None], "more": {"deep": i % 2 == 0, "first": 0}}
        # Spaces after separators or none: json-rewrite matches `"first":` in both.
        lines.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":") if i % 2 else (", ", ": ")))
        expected.append({"n": i, "given": f"ädä-{i}", "tags": ["x", i, None], "more": doc["more"], "through": "weir"})
    src = tmp_path / "in.jsonl"
    append_lines(src, lines)
    create(broker, "json-wasm", source_config(src, "rewritten", **{
        "weir.value.format": "json",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": schemas,
        "transforms": "rename,insert,through",
        "transforms.rename.type": "json-rewrite",
        "transforms.rename.from": "first",
        "transforms.rename.to": "given",
        "transforms.insert.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.insert.static.field": "via",
        "transforms.insert.static.value": "weir",
        "transforms.through.type": "json-rewrite",
        "transforms.through.from": "via",
        "transforms.through.to": "through",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": "dlq-rewritten",
        "errors.deadletterqueue.context.headers.enable": "true",
    }))  # fmt: skip

    def counted():
        st = get(broker, "/connectors/json-wasm/status")
        task = st["tasks"][0]
        assert st["connector"]["state"] == "RUNNING" and task["state"] == "RUNNING", st
        assert "trace" not in task, st
        got = (task.get("errors_tolerated", 0), task.get("dead_lettered", 0))
        assert got == (len(bad), len(bad)), f"want {(len(bad), len(bad))}: {task}"
        return st

    def records(topic: str, n: int):
        def probe():
            got = ck_consume_partition(broker.bootstrap, topic, 0, 0, timeout=10)
            assert len(got) == n, f"{len(got)} records: {[r.value for r in got]}"
            return got

        return wait_until(probe, timeout=WAIT, interval=0.2, what=f"{n} records in {topic}")

    wait_until(counted, timeout=WAIT, what="json-wasm counting the bad lines")
    written = records("rewritten", len(expected))
    for r, want in zip(written, expected):
        text = r.value.decode()
        got = json.loads(text)
        if schemas == "true":
            assert got == {"schema": None, "payload": want}, text
            got = ordered(text)
            assert [name for name, _ in got] == ["schema", "payload"], text
            got = got[1][1]
        else:
            assert got == want, text
            got = ordered(text)
        assert got == ordered(want), f"member order: {text}"
        assert r.key is None, r

    dead = records("dlq-rewritten", len(bad))
    assert [r.value for r in dead] == [x.encode() for x in bad.values()]
    for r in dead:
        assert r.key is None, r
        h = {k: (v.decode() if v is not None else None) for k, v in r.headers}
        assert h["__connect.errors.stage"] == "TRANSFORMATION", h
        assert h["__connect.errors.topic"] == "rewritten", h
        assert h["__connect.errors.connector.name"] == "json-wasm", h
        assert h["__connect.errors.task.id"] == "0", h
        assert "value is not a JSON object" in h["__connect.errors.exception.message"], h
    # Nothing more comes: exactly the good records, exactly the bad ones.
    counted()
    assert high_watermark(broker.bootstrap, "rewritten") == len(expected)
    assert high_watermark(broker.bootstrap, "dlq-rewritten") == len(bad)


@pytest.mark.timeout(120)
def test_a_wasm_step_keeps_json_strings_and_a_bytes_side_stays_bytes(weir_bin, start_broker, tmp_path):
    """On a JSON side (the source's values are JSON and so is the converter) a WebAssembly step
    gets JSON text, strings quoted, and what it returns is read as JSON again: add-header, which
    replaces the batch and copies every value, leaves "42", "null" and "hello" strings, not a number, a tombstone or a bad
    record. With StringConverter the side is bytes: the step's output is not read as JSON."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    installed = run_cli(weir_bin, "plugin", "install", str(rust_guest(weir_bin, "add_header")), "--dir", str(plugins))
    assert installed.returncode == 0, describe_process(installed)
    broker = start_connect(start_broker, tmp_path)
    lines = ['"42"', '"null"', '"hello"', '{"a": [1, "x"]}', "7", "true"]
    src = tmp_path / "in.jsonl"
    append_lines(src, lines)
    for name, converter in [("json", "org.apache.kafka.connect.json.JsonConverter"),
                            ("text", "org.apache.kafka.connect.storage.StringConverter")]:  # fmt: skip
        create(broker, f"ident-{name}", source_config(src, f"ident-{name}", **{
            "weir.value.format": "json",
            "value.converter": converter,
            "value.converter.schemas.enable": "false",
            "transforms": "same",
            "transforms.same.type": "add-header",
        }))  # fmt: skip

    def records(topic: str):
        got = ck_consume_partition(broker.bootstrap, topic, 0, 0, timeout=10)
        assert len(got) == len(lines), f"{len(got)} records: {[r.value for r in got]}"
        return [r.value for r in got]

    got = wait_until(lambda: records("ident-json"), timeout=WAIT, what="the JSON side's records")
    assert [json.loads(v) for v in got] == [json.loads(x) for x in lines], got
    # StringConverter writes a JSON string's text and other documents as they are.
    got = wait_until(lambda: records("ident-text"), timeout=WAIT, what="the bytes side's records")
    assert got == [b"42", b"null", b"hello", b'{"a": [1, "x"]}', b"7", b"true"], got
    for name in ("json", "text"):
        st = get(broker, f"/connectors/ident-{name}/status")
        assert st["tasks"][0]["state"] == "RUNNING" and "errors_tolerated" not in st["tasks"][0], st
