"""The file connectors run through the real `weir plugin run`: records and Kafka's offsets from
the source, tailing, rotation and directory mode; the sink's lines, its sidecar, and exactly
once across `kill -9` and across a crash between its flush and the runtime's commit.

    WEIR_BIN=.../weir WEIR_CONNECTORS=.../wasm32-wasip2/release pytest connectors/tests
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

WEIR_BIN = os.environ.get("WEIR_BIN", "/var/cache/weir/target/release/weir")
CONNECTORS = Path(os.environ.get("WEIR_CONNECTORS", "/var/cache/weir/connectors/wasm32-wasip2/release"))
SOURCE = str(CONNECTORS / "file_source.wasm")
SINK = str(CONNECTORS / "file_sink.wasm")


@pytest.fixture(autouse=True)
def _built():
    for p in (WEIR_BIN, SOURCE, SINK):
        if not Path(p).exists():
            pytest.fail(f"{p} not found (build weir and connectors/ first)", pytrace=False)


def weir(*args, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([WEIR_BIN, *args], input=input, capture_output=True, text=True, timeout=timeout)


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


def source(d: Path, *config: str, extra: tuple = ()) -> subprocess.CompletedProcess:
    cfg = [a for c in (f"weir.dirs={d}:/data", *config) for a in ("-c", c)]
    return weir("plugin", "run", SOURCE, *cfg, *extra)


def records(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, show(r)
    return [json.loads(line) for line in r.stdout.splitlines()]


def partition(path: str) -> str:
    return json.dumps({"filename": path}, separators=(",", ":"))


def offset(position: int) -> str:
    return json.dumps({"position": position}, separators=(",", ":"))


class Follower:
    """A `--follow` run whose output lines are read as they come."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([WEIR_BIN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()

    def take(self, n: int, timeout: float = 30) -> list[dict]:
        got, deadline = [], time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"got {got}, wanted {n} records"
            try:
                got.append(json.loads(self.lines.get(timeout=left)))
            except queue.Empty:
                pass
        return got

    def quiet(self, seconds: float = 0.7) -> None:
        time.sleep(seconds)
        assert self.lines.empty(), self.lines.get()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        err = self.proc.stderr.read()
        assert code == 0, err
        return err


# The source.


def test_source_reads_lines_with_kafka_offsets_and_resumes(tmp_path):
    (tmp_path / "test.txt").write_bytes(b"one\ntwo\r\n\nthree")
    got = records(source(tmp_path, "file=/data/test.txt", "topic=connect-test"))
    assert got == [
        {"topic": "connect-test", "key": None, "value": v, "timestamp": 0,
         "source_partition": partition("/data/test.txt"), "source_offset": offset(p)}
        for v, p in [("one", 4), ("two", 9), ("", 10)]
    ]  # fmt: skip
    # Resumes after the committed position; the last line waits for its newline.
    r = source(tmp_path, "file=/data/test.txt", "topic=t",
               extra=("--committed", f"{partition('/data/test.txt')}={offset(4)}"))  # fmt: skip
    assert [x["value"] for x in records(r)] == ["two", ""]
    with open(tmp_path / "test.txt", "ab") as f:
        f.write(b"\n")
    r = source(tmp_path, "file=/data/test.txt", "topic=t", extra=("--committed", f"{partition('/data/test.txt')}={offset(10)}"))
    assert [(x["value"], x["source_offset"]) for x in records(r)] == [("three", offset(16))]


def test_source_batch_size_caps_a_poll(tmp_path):
    (tmp_path / "n.txt").write_text("".join(f"{i}\n" for i in range(25)))
    r = source(tmp_path, "file=/data/n.txt", "topic=t", "batch.size=10", extra=("--max-records", "25", "--batch", "500"))
    assert [x["value"] for x in records(r)] == [str(i) for i in range(25)]


def test_source_tails_and_follows_rotation(tmp_path):
    log = tmp_path / "app.log"
    f = Follower("plugin", "run", SOURCE, "-c", f"weir.dirs={tmp_path}:/data", "-c", "file=/data/app.log",
                 "-c", "topic=t", "--follow")  # fmt: skip
    try:
        f.quiet()  # the file does not exist yet: waited for
        log.write_text("a\nb")
        assert [x["value"] for x in f.take(1)] == ["a"]
        f.quiet()
        with open(log, "a") as out:
            out.write("\nc\n")
        assert [x["value"] for x in f.take(2)] == ["b", "c"]
        # Renamed away and recreated longer: a new file, read from its start.
        log.rename(tmp_path / "app.log.1")
        log.write_text("new one\nnew two\nnew three\n")
        got = f.take(3)
        assert [x["value"] for x in got] == ["new one", "new two", "new three"]
        assert got[0]["source_offset"] == offset(8)
        # Truncated: from the start again.
        log.write_text("z\n")
        assert [x["value"] for x in f.take(1)] == ["z"]
        f.quiet()
    finally:
        err = f.stop()
    assert "does not exist; waiting for it to be created" in err, err
    assert "is a new file" in err, err


def test_source_directory_mode_picks_up_new_files(tmp_path):
    (tmp_path / "a.log").write_text("a1\n")
    (tmp_path / "skip.txt").write_text("no\n")
    (tmp_path / ".hidden.log").write_text("no\n")
    f = Follower("plugin", "run", SOURCE, "-c", f"weir.dirs={tmp_path}:/data", "-c", "directory=/data",
                 "-c", "pattern=*.log", "-c", "topic=t", "--follow")  # fmt: skip
    try:
        got = f.take(1)
        assert (got[0]["value"], got[0]["source_partition"]) == ("a1", partition("/data/a.log"))
        (tmp_path / "b.log").write_text("b1\nb2\n")
        (tmp_path / "other.txt").write_text("no\n")
        got = f.take(2)
        assert [(x["value"], x["source_partition"]) for x in got] == [("b1", partition("/data/b.log")), ("b2", partition("/data/b.log"))]
        with open(tmp_path / "a.log", "a") as out:
            out.write("a2\n")
        assert [x["value"] for x in f.take(1)] == ["a2"]
        f.quiet()
    finally:
        f.stop()


def test_source_directory_mode_resumes_each_file(tmp_path):
    (tmp_path / "a.log").write_text("a1\na2\n")
    (tmp_path / "b.log").write_text("b1\nb2\n")
    r = source(tmp_path, "directory=/data", "topic=t",
               extra=("--committed", f"{partition('/data/a.log')}={offset(3)}",
                      "--committed", f"{partition('/data/b.log')}={offset(6)}"))  # fmt: skip
    assert [x["value"] for x in records(r)] == ["a2"]


def test_source_config_problems_name_the_key(tmp_path):
    cases = [
        (["topic=t"], "file: required"),
        (["file=/data/x", "directory=/data", "topic=t"], "directory: give either file"),
        (["file=/data/x"], "topic: required"),
        (["file=/data/x", "topic=t", "batch.size=0"], "batch.size: must be a whole number of at least 1"),
        (["file=/data/x", "topic=t", "batch.size=many"], "batch.size: not an integer"),
        (["directory=/data", "pattern=[x", "topic=t"], "pattern: '[' at character 1 is never closed"),
        (["file=/data/x", "topic=t", "fille=y"], "fille: unknown key (did you mean file?)"),
        (["file=/elsewhere/x", "topic=t"], "cannot reach directory /elsewhere"),
    ]
    for config, message in cases:
        r = source(tmp_path, *config)
        assert r.returncode != 0 and message in r.stderr, (config, show(r))


# The sink.


def sink_input(offsets, topic="t", partition=0, value=lambda o: f"v{o}") -> str:
    return "".join(json.dumps({"topic": topic, "partition": partition, "offset": o, "value": value(o)}) + "\n"
                   for o in offsets)  # fmt: skip


def sink(d: Path, input: str, *extra: str) -> subprocess.CompletedProcess:
    return weir("plugin", "run", SINK, "-c", f"weir.dirs={d}:/data", "-c", "file=/data/out.txt", *extra, input=input)


def sidecar(d: Path) -> dict:
    return json.loads((d / ".out.txt.weir-sink").read_text())


def test_sink_writes_lines_and_its_sidecar(tmp_path):
    (tmp_path / "out.txt").write_text("kept\n")
    data = sink_input([0, 1]) + json.dumps({"topic": "u", "partition": 3, "offset": 7, "value": None}) + "\n"
    r = sink(tmp_path, data)
    assert r.returncode == 0, show(r)
    assert "durable (would be committed): t/0/1, u/3/7" in r.stderr, show(r)
    assert (tmp_path / "out.txt").read_text() == "kept\nv0\nv1\nnull\n"
    assert sidecar(tmp_path) == {"version": 1, "length": 16, "positions": [
        {"topic": "t", "partition": 0, "offset": 1}, {"topic": "u", "partition": 3, "offset": 7}]}  # fmt: skip


def test_sink_skips_what_it_flushed_before_the_commit(tmp_path):
    r = sink(tmp_path, sink_input(range(10)))
    assert r.returncode == 0, show(r)
    # The runtime committed only 4 before a crash: 5.. come again, with new ones.
    r = sink(tmp_path, sink_input(range(5, 15)), "--committed", "t/0=4")
    assert r.returncode == 0, show(r)
    assert "durable (would be committed): t/0/14" in r.stderr, show(r)
    assert (tmp_path / "out.txt").read_text() == "".join(f"v{i}\n" for i in range(15))


def test_sink_is_exactly_once_across_kill_9(tmp_path):
    n, big = 40_000, "x" * 100
    value = lambda o: f"{o} {big}"  # noqa: E731
    # Everything is put (so more than 1 MiB reaches the file), nothing flushed: standard input
    # stays open, and weir plugin run flushes only at its end.
    proc = subprocess.Popen([WEIR_BIN, "plugin", "run", SINK, "-c", f"weir.dirs={tmp_path}:/data",
                             "-c", "file=/data/out.txt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdin.write(sink_input(range(n), value=value))
    proc.stdin.flush()
    out = tmp_path / "out.txt"
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size < 2 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    assert out.stat().st_size >= 2 << 20, "put never wrote to the file"
    assert sidecar(tmp_path)["length"] == 0
    # Nothing was committed: everything comes again.
    r = sink(tmp_path, sink_input(range(n), value=value))
    assert r.returncode == 0, show(r)
    assert "dropped the" in r.stderr, show(r)
    lines = out.read_text().splitlines()
    assert lines == [value(i) for i in range(n)]
    assert sidecar(tmp_path)["positions"] == [{"topic": "t", "partition": 0, "offset": n - 1}]


def test_sink_config_problems_name_the_key(tmp_path):
    r = weir("plugin", "run", SINK, "-c", f"weir.dirs={tmp_path}:/data", input="")
    assert r.returncode != 0 and "file: required" in r.stderr, show(r)
    r = weir("plugin", "run", SINK, "-c", f"weir.dirs={tmp_path}:/data", "-c", "file=/data/", input="")
    assert r.returncode != 0 and "names a directory" in r.stderr, show(r)
    r = weir("plugin", "run", SINK, "-c", "file=/nowhere/out.txt", input="")
    assert r.returncode != 0 and "file: cannot open /nowhere/out.txt" in r.stderr, show(r)
