"""Every world (transform, source, sink) in every guest language (Rust, Python, JavaScript),
run through the real `weir plugin run` with exact expected output.

The Rust components are weir-host's guest fixtures (built by its build script); the Python
and JavaScript ones are examples/python and examples/js, built from scratch by
`examples/build-plugins` (scripts/test runs it and sets WEIR_EXAMPLE_PLUGINS). The four
plugins behave identically in the three languages, so one expectation serves all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import describe_process, run_cli
from test_plugin_cli import guest

LANGUAGES = ["rust", "python", "js"]


def component(weir_bin: str, language: str, name: str) -> Path:
    if language == "rust":
        return guest(weir_bin, name.replace("-", "_"))
    built = os.environ.get("WEIR_EXAMPLE_PLUGINS")
    if not built:
        pytest.fail("WEIR_EXAMPLE_PLUGINS is not set; run examples/build-plugins DIR and export it", pytrace=False)
    path = Path(built) / f"{language}-{name}.wasm"
    if not path.exists():
        pytest.fail(f"{path} was not built by examples/build-plugins", pytrace=False)
    return path


@pytest.fixture(scope="session")
def compiled_cache(tmp_path_factory) -> str:
    """One cache of compiled components for the session: each component compiles once."""
    return str(tmp_path_factory.mktemp("compiled"))


def plugin_run(weir_bin, cache, path, *args, input=None):
    return run_cli(
        weir_bin,
        "plugin",
        "run",
        str(path),
        *args,
        input=input,
        timeout=180,
        env={"WEIR_PLUGIN_CACHE": cache, "RUST_LOG": "info"},
    )


def lines(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def parse(stdout: str):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("language", LANGUAGES)
def test_identity_transform_returns_the_batch_unchanged(weir_bin, compiled_cache, language):
    records = [
        {"key": "k0", "value": '{"a":1}', "headers": [["h", "v"], ["empty", None]], "timestamp": 1700000000000},
        {"key": None, "value": "plain text", "timestamp": 5},
        {"key": "k2", "value": None, "headers": [["h", "v2"]], "timestamp": 7},
    ]
    r = plugin_run(weir_bin, compiled_cache, component(weir_bin, language, "identity"), "--batch", "2", input=lines(records))
    assert r.returncode == 0, describe_process(r)
    assert parse(r.stdout) == [
        {"key": "k0", "value": '{"a":1}', "headers": [["h", "v"], ["empty", None]], "timestamp": 1700000000000},
        {"key": None, "value": "plain text", "timestamp": 5},
        {"key": "k2", "value": None, "headers": [["h", "v2"]], "timestamp": 7},
    ], describe_process(r)


@pytest.mark.parametrize("language", LANGUAGES)
def test_json_rewrite_transform_renames_validates_and_names_bad_records(weir_bin, compiled_cache, language):
    path = component(weir_bin, language, "json-rewrite")
    records = [
        {"key": "a", "value": '{"name":"ada","age":36}', "timestamp": 1},
        {"key": "b", "value": '{"age":1,"name":"bob","name":"twice"}', "timestamp": 2},
        {"key": "c", "value": None, "timestamp": 3},
    ]
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "from=name", "-c", "to=full_name", input=lines(records))
    assert r.returncode == 0, describe_process(r)
    assert parse(r.stdout) == [
        {"key": "a", "value": '{"full_name":"ada","age":36}', "timestamp": 1},
        {"key": "b", "value": '{"age":1,"full_name":"bob","name":"twice"}', "timestamp": 2},
        {"key": "c", "value": None, "timestamp": 3},
    ]

    # A bad record is reported with its input line, as the runtime would dead-letter it; the
    # records before and after it are still transformed; the exit status says it happened.
    bad = records[:1] + [{"key": "x", "value": "[1,2]", "timestamp": 4}] + records[1:2]
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "from=name", "-c", "to=full_name", input=lines(bad))
    assert r.returncode == 1, describe_process(r)
    assert "input line 2: bad record (apply): value is not a JSON object" in r.stderr, describe_process(r)
    assert "1 bad record (reported above" in r.stderr, describe_process(r)
    assert parse(r.stdout) == [
        {"key": "a", "value": '{"full_name":"ada","age":36}', "timestamp": 1},
        {"key": "b", "value": '{"age":1,"full_name":"bob","name":"twice"}', "timestamp": 2},
    ], describe_process(r)

    # The configuration is checked against what the plugin declares before it is opened.
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "from=name", input="")
    assert r.returncode == 1, describe_process(r)
    assert "invalid config: to: required" in r.stderr, describe_process(r)
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "from=name", "-c", "too=x", input="")
    assert r.returncode == 1, describe_process(r)
    assert "too: unknown key (did you mean to?)" in r.stderr, describe_process(r)


def counter(i: int, topic: str = "numbers") -> dict:
    return {
        "topic": topic,
        "key": f"k{i}",
        "value": '{"n":%d}' % i,
        "headers": [["source", "counter"]],
        "timestamp": 1700000000000 + i,
        "source_partition": "counter",
        "source_offset": str(i),
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_counter_source_polls_acks_and_resumes(weir_bin, compiled_cache, language):
    path = component(weir_bin, language, "counter-source")
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "topic=numbers", "-c", "count=5", "--batch", "2")
    assert r.returncode == 0, describe_process(r)
    assert parse(r.stdout) == [counter(i) for i in range(5)], describe_process(r)
    # Each batch was acked (2 + 2 + 1 records), and the plugin's logs reached the host's.
    for offset in ("1", "3", "4"):
        assert f"acked {offset}" in r.stderr, describe_process(r)
    assert "closed" in r.stderr, describe_process(r)

    r = plugin_run(weir_bin, compiled_cache, path, "-c", "topic=numbers", "-c", "count=5", "--committed", "counter=2")
    assert r.returncode == 0, describe_process(r)
    assert parse(r.stdout) == [counter(3), counter(4)], describe_process(r)

    r = plugin_run(weir_bin, compiled_cache, path, "-c", "topic=numbers", "-c", "count=many")
    assert r.returncode == 1, describe_process(r)
    assert 'invalid config: count: not an integer (got "many")' in r.stderr, describe_process(r)


@pytest.mark.parametrize("language", LANGUAGES)
def test_file_sink_writes_only_on_flush_into_its_granted_directory(weir_bin, compiled_cache, language, tmp_path):
    path = component(weir_bin, language, "file-sink")
    out = tmp_path / "out"
    out.mkdir()
    records = [
        {"topic": "orders", "partition": 1, "offset": 10, "key": "k0", "value": "v0", "timestamp": 1},
        {"topic": "orders", "partition": 1, "offset": 11, "key": "k1", "value": "v1", "timestamp": 2},
        {"topic": "orders", "partition": 0, "offset": 3, "key": None, "value": "v2", "timestamp": 3},
    ]
    r = plugin_run(
        weir_bin, compiled_cache, path,
        "-c", f"weir.dirs={out}:/out", "-c", "path=/out/records.txt", "--batch", "2",
        input=lines(records),
    )  # fmt: skip
    assert r.returncode == 0, describe_process(r)
    assert (out / "records.txt").read_text() == "orders/1/10 k0 v0\norders/1/11 k1 v1\norders/0/3 - v2\n"
    assert (
        "put 3 records, flushed up to orders/0/3, orders/1/11; durable (would be committed): orders/0/3, orders/1/11"
        in r.stderr
    ), describe_process(r)

    # Opened with the positions the runtime committed, the sink sees them.
    r = plugin_run(
        weir_bin, compiled_cache, path,
        "-c", f"weir.dirs={out}:/out", "-c", "path=/out/resumed.txt", "--committed", "orders/1=9",
        input=lines(records[1:2]),
    )  # fmt: skip
    assert r.returncode == 0, describe_process(r)
    assert "resuming after orders/1/9" in r.stderr, describe_process(r)

    # A record without a position is reported with its input line; the others are written.
    r = plugin_run(
        weir_bin, compiled_cache, path,
        "-c", f"weir.dirs={out}:/out", "-c", "path=/out/second.txt",
        input=lines([records[0], {"key": "x", "value": "y", "timestamp": 4}]),
    )  # fmt: skip
    assert r.returncode == 1, describe_process(r)
    assert "input line 2: bad record (put): record has no position" in r.stderr, describe_process(r)
    assert (out / "second.txt").read_text() == "orders/1/10 k0 v0\n"

    # Without the grant the plugin sees no /out at all: its write fails (retriable).
    r = plugin_run(weir_bin, compiled_cache, path, "-c", "path=/out/records.txt", input=lines(records))
    assert r.returncode == 1, describe_process(r)
    assert "returned an error from flush: retriable: " in r.stderr, describe_process(r)
    assert (out / "records.txt").read_text().count("\n") == 3


def test_plugin_run_reports_only_what_the_sink_made_durable(weir_bin, compiled_cache, tmp_path):
    """A sink that makes less durable than it was asked to flush is reported as such; one that
    claims more than it was given is an error, not a commit."""
    path = component(weir_bin, "rust", "file-sink")
    records = [
        {"topic": "orders", "partition": 0, "offset": 3, "key": "a", "value": "v0", "timestamp": 1},
        {"topic": "orders", "partition": 1, "offset": 11, "key": "b", "value": "v1", "timestamp": 2},
    ]
    grant = ["-c", f"weir.dirs={tmp_path}:/out", "-c", "path=/out/r.txt"]
    r = plugin_run(weir_bin, compiled_cache, path, *grant, "-c", "durable=first", input=lines(records))
    assert r.returncode == 0, describe_process(r)
    assert (
        "put 2 records, flushed up to orders/0/3, orders/1/11; durable (would be committed): orders/0/3\n"
        in r.stderr
    ), describe_process(r)

    r = plugin_run(weir_bin, compiled_cache, path, *grant, "-c", "durable=past", input=lines(records))
    assert r.returncode == 1, describe_process(r)
    assert "orders/0/4 durable, which is past what was asked (3)" in r.stderr, describe_process(r)
    assert "durable (would be committed)" not in r.stderr, describe_process(r)


@pytest.mark.parametrize("language", LANGUAGES)
def test_inspect_names_the_world_of_every_example(weir_bin, compiled_cache, language):
    for name, kind, export in [
        ("identity", "transform", "transformer"),
        ("counter-source", "source", "source"),
        ("file-sink", "sink", "sink"),
    ]:
        r = run_cli(weir_bin, "plugin", "inspect", str(component(weir_bin, language, name)), timeout=180)
        assert r.returncode == 0, describe_process(r)
        assert f"plugin:      {name} 0.2.0" in r.stdout, describe_process(r)
        assert f"kind:        {kind}" in r.stdout, describe_process(r)
        assert f"weir:connector/{export}@0.2.2" in r.stdout, describe_process(r)
