"""What an operator sees when a plugin misbehaves or runs long: a Python exception ends the
task with its traceback in the error, prints reach the log, and `weir plugin run --follow`
keeps a source running until it is told to stop."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import describe_process, run_cli
from test_plugin_cli import guest

HERE = Path(__file__).parent


def componentize_py() -> str:
    venv = os.environ.get("WEIR_PLUGIN_VENV", "/var/cache/weir/venv-plugins")
    tool = Path(venv) / "bin" / "componentize-py"
    if not tool.exists():
        pytest.fail(f"{tool} not found: examples/build-plugins installs it", pytrace=False)
    return str(tool)


def test_a_python_exception_fails_the_task_with_its_traceback(weir_bin, tmp_path):
    wasm = tmp_path / "python-raises.wasm"
    build = subprocess.run(
        [componentize_py(), "-d", str(HERE.parents[1] / "wit"), "-w", "transform", "componentize",
         "-p", str(HERE / "plugins" / "python-raises"), "-p", str(HERE.parents[1] / "sdk" / "python"),
         "app", "-o", str(wasm)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert build.returncode == 0, describe_process(build)
    records = '{"key":"a","value":"ab","timestamp":1}\n{"key":"b","value":"x","timestamp":2}\n'
    r = run_cli(weir_bin, "plugin", "run", str(wasm), input=records, timeout=180, env={"RUST_LOG": "info"})
    assert r.returncode == 1, describe_process(r)
    assert "plugin python-raises failed in apply" in r.stderr, describe_process(r)
    assert "ZeroDivisionError: division by zero" in r.stderr, describe_process(r)
    # The error names the batch by its input lines, the traceback the record within it.
    assert "error: the batch of input lines 1-2: plugin python-raises failed in apply" in r.stderr, describe_process(r)
    assert "transform raised ZeroDivisionError at record 1 of the batch (index from 0): division by zero" in r.stderr, describe_process(r)
    # The print before the exception reached the log, with the plugin named.
    assert "python-raises got a batch" in r.stderr, describe_process(r)
    assert "plugin{plugin=python-raises" in r.stderr, describe_process(r)


def test_follow_keeps_a_source_running_until_sigterm(weir_bin, tmp_path):
    watched = tmp_path / "in"
    watched.mkdir()
    proc = subprocess.Popen(
        [weir_bin, "plugin", "run", str(guest(weir_bin, "file_watch")),
         "-c", f"weir.dirs={watched}:/in", "-c", "dir=/in", "--follow"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        # The watch starts when the source opens; keep creating files until one is reported.
        seen = []
        deadline = time.monotonic() + 60
        i = 0
        while not any('"created /in/' in line for line in seen) and time.monotonic() < deadline:
            (watched / f"f{i}.txt").write_text("x")
            i += 1
            try:
                seen.append(lines.get(timeout=0.3))
            except queue.Empty:
                pass
            assert proc.poll() is None, f"weir exited early: {proc.returncode}"
        assert any('"created /in/f' in line for line in seen), seen
        time.sleep(0.5)  # idle polls in between: the process must stay up
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_javascript_exception_fails_the_task_with_its_message(weir_bin, tmp_path):
    tool = HERE.parents[1] / "examples" / "js" / "node_modules" / ".bin" / "componentize-qjs"
    if not tool.exists():
        pytest.fail(f"{tool} not found: examples/build-plugins installs it", pytrace=False)
    wasm = tmp_path / "js-throws.wasm"
    build = subprocess.run(
        [str(tool), "--sync", "--wit", str(HERE.parents[1] / "wit"), "--world", "transform",
         "--module-root", str(HERE.parents[1]),
         "--js", str(HERE / "plugins" / "js-throws" / "index.js"), "-o", str(wasm)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, describe_process(build)
    records = '{"key":"a","value":"b","timestamp":1}\n{"key":"c","value":"d","timestamp":2}\n'
    r = run_cli(weir_bin, "plugin", "run", str(wasm), input=records, timeout=180)
    assert r.returncode == 1, describe_process(r)
    assert "plugin js-throws failed in apply: wasm trap: wasm `unreachable` instruction executed" in r.stderr, describe_process(r)
    assert "cannot read property 'length' of undefined" in r.stderr, describe_process(r)
    assert "thrown by transform for record 1 of the batch" in r.stderr, describe_process(r)
    assert "the batch of input lines 1-2" in r.stderr, describe_process(r)
