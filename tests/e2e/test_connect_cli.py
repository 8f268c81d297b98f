"""`weir connector ...` against a running `weir up`: tables, --json, errors."""

from __future__ import annotations

import json

import pytest

from helpers import describe_process, run_cli, wait_until
from test_connect import WAIT, append_lines, complete_lines, start_connect


def weir_connector(weir_bin: str, broker, *args: str):
    return run_cli(weir_bin, "connector", "--url", broker.rest_url, *args)


@pytest.mark.timeout(120)
def test_connector_cli(weir_bin, start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    append_lines(src, ["x", "y"])
    r = weir_connector(weir_bin, broker, "create", "cli-src", "-c", "connector.class=FileStreamSource",
                       "-c", f"file={src}", "-c", "topic=cli")  # fmt: skip
    assert r.returncode == 0, describe_process(r)
    assert "cli-src (source) with 1 task(s)" in r.stdout, r.stdout
    cfg = tmp_path / "sink.json"
    cfg.write_text(json.dumps({"name": "ignored", "config": {
        "connector.class": "FileStreamSink", "file": str(out), "topics": "cli"}}))  # fmt: skip
    r = weir_connector(weir_bin, broker, "create", "cli-sink", "--file", str(cfg))
    assert r.returncode == 0, describe_process(r)
    wait_until(lambda: complete_lines(out) == ["x", "y"], timeout=WAIT, what="both lines")

    r = weir_connector(weir_bin, broker, "list")
    assert r.returncode == 0, describe_process(r)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATE", "CLASS", "TASKS"], r.stdout
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows["cli-src"][1:3] == ["source", "RUNNING"] and rows["cli-sink"][1:3] == ["sink", "RUNNING"], r.stdout

    r = weir_connector(weir_bin, broker, "status", "cli-sink")
    assert r.returncode == 0 and "cli-sink (sink): RUNNING" in r.stdout, describe_process(r)
    r = weir_connector(weir_bin, broker, "--json", "status", "cli-sink")
    assert json.loads(r.stdout)["tasks"][0]["state"] == "RUNNING", r.stdout
    r = weir_connector(weir_bin, broker, "config", "cli-src")
    assert "topic = cli" in r.stdout.splitlines(), r.stdout
    for verb, word in [("pause", "paused"), ("resume", "resumed"), ("stop", "stopped")]:
        r = weir_connector(weir_bin, broker, verb, "cli-src")
        assert r.returncode == 0 and f"connector cli-src {word}" in r.stdout, describe_process(r)
    r = weir_connector(weir_bin, broker, "offsets", "cli-src")
    assert r.returncode == 0 and '"filename"' in r.stdout, describe_process(r)
    r = weir_connector(weir_bin, broker, "restart", "cli-sink", "--include-tasks")
    assert r.returncode == 0, describe_process(r)
    r = weir_connector(weir_bin, broker, "plugins")
    assert "org.apache.kafka.connect.file.FileStreamSourceConnector" in r.stdout, r.stdout
    r = weir_connector(weir_bin, broker, "delete", "cli-src")
    assert r.returncode == 0, describe_process(r)

    # Errors: the API's message and a non-zero exit.
    r = weir_connector(weir_bin, broker, "status", "cli-src")
    assert r.returncode != 0 and "Connector cli-src not found (HTTP 404)" in r.stderr, describe_process(r)
    r = weir_connector(weir_bin, broker, "create", "bad", "-c", "connector.class=Nope")
    assert r.returncode != 0 and "connector.class" in r.stderr, describe_process(r)
    r = run_cli(weir_bin, "connector", "--url", "http://127.0.0.1:1", "list")
    assert r.returncode != 0 and "cannot reach" in r.stderr, describe_process(r)
