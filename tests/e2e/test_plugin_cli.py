"""`weir plugin inspect|install` on the real guest components that weir-host's build script
builds (found next to the binary under test, in cargo's build output)."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import pytest

from helpers import describe_process, run_cli


def guest(weir_bin: str, name: str) -> Path:
    pattern = os.path.join(os.path.dirname(weir_bin), "build", "weir-host-*", "out", "guests", "wasm32-wasip2", "release", f"{name}.wasm")
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        pytest.fail(f"guest component {name}.wasm not found ({pattern}); build the workspace first", pytrace=False)
    return Path(found[-1])


def test_inspect_prints_identity_kind_and_config(weir_bin):
    result = run_cli(weir_bin, "plugin", "inspect", str(guest(weir_bin, "json_rewrite")))
    assert result.returncode == 0, describe_process(result)
    out = result.stdout
    assert "json-rewrite 0.2.0" in out, out
    assert "transform" in out, out
    assert "weir:connector/transformer@0.2.2" in out, out
    # Both configuration keys with their type and whether they are required.
    assert "from (string, required)" in out and "to (string, required)" in out, out


def test_install_places_versions_side_by_side_and_refuses_overwrite(weir_bin, tmp_path):
    plugins = tmp_path / "plugins"
    component = guest(weir_bin, "identity")
    first = run_cli(weir_bin, "plugin", "install", str(component), "--dir", str(plugins))
    assert first.returncode == 0, describe_process(first)
    installed = plugins / "identity" / "0.2.0.wasm"
    assert installed.read_bytes() == component.read_bytes()
    again = run_cli(weir_bin, "plugin", "install", str(component), "--dir", str(plugins))
    assert again.returncode != 0 and "already installed" in again.stderr, describe_process(again)
    forced = run_cli(weir_bin, "plugin", "install", str(component), "--dir", str(plugins), "--force")
    assert forced.returncode == 0, describe_process(forced)


def test_bad_files_give_clear_errors(weir_bin, tmp_path):
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"not a component at all")
    bad = run_cli(weir_bin, "plugin", "inspect", str(junk))
    assert bad.returncode != 0 and "is not a valid component: it is not a WebAssembly file" in bad.stderr, describe_process(bad)
    assert "Error {" not in bad.stderr and "backtrace" not in bad.stderr.lower(), describe_process(bad)
    # A core module (what `cargo build --target wasm32-unknown-unknown` gives) gets the fix.
    core = tmp_path / "core.wasm"
    core.write_bytes(b"\0asm\x01\0\0\0")
    hint = run_cli(weir_bin, "plugin", "inspect", str(core))
    assert hint.returncode != 0 and "core WebAssembly module, not a component: build it for the wasm32-wasip2 target" in hint.stderr, describe_process(hint)
    missing = run_cli(weir_bin, "plugin", "inspect", str(tmp_path / "missing.wasm"))
    assert missing.returncode != 0 and "missing.wasm" in missing.stderr, describe_process(missing)
    assert missing.stderr.count("No such file or directory") == 1, describe_process(missing)
    other = run_cli(weir_bin, "plugin", "inspect", str(guest(weir_bin, "not_a_transform")))
    assert other.returncode != 0 and "does not export weir:connector/transformer@0.2.2" in other.stderr, describe_process(other)


def test_a_component_of_another_contract_version_is_refused_by_name(weir_bin):
    for command in (["plugin", "inspect"], ["plugin", "run"]):
        result = run_cli(weir_bin, *command, str(guest(weir_bin, "old_contract")), input="")
        assert result.returncode == 1, describe_process(result)
        assert (
            "was built against weir:connector@0.1.0; this host implements weir:connector@0.2.2" in result.stderr
        ), describe_process(result)


def test_plugin_run_names_a_bad_input_line_and_a_bad_runtime_key(weir_bin):
    identity = str(guest(weir_bin, "identity"))
    r = run_cli(weir_bin, "plugin", "run", identity, input='{"key":"a","value":"b"}\nnot json\n')
    assert r.returncode == 1, describe_process(r)
    assert "input line 2: not a JSON record" in r.stderr, describe_process(r)
    assert r.stdout == "", describe_process(r)
    r = run_cli(weir_bin, "plugin", "run", identity, "-c", "weir.dirz=/tmp:/x", input="")
    assert r.returncode == 1, describe_process(r)
    assert 'unknown runtime key "weir.dirz"' in r.stderr, describe_process(r)


def test_plugin_run_refuses_an_impossible_memory_limit(weir_bin):
    identity = str(guest(weir_bin, "identity"))
    r = run_cli(weir_bin, "plugin", "run", identity, "--memory-mib", "5000", input="")
    assert r.returncode == 1 and "--memory-mib must be between 1 and 4096" in r.stderr, describe_process(r)
    r = run_cli(weir_bin, "plugin", "run", identity, "-c", "weir.memory.limit.bytes=9999999999", input="")
    assert r.returncode == 1 and "weir.memory.limit.bytes must be between 1 and 4294967296" in r.stderr, describe_process(r)


@pytest.mark.timeout(600)
def test_plugin_new_makes_a_project_that_builds_anywhere_and_runs(weir_bin, tmp_path):
    """`weir plugin new` writes the SDK and the contract into the project, so a copy of the
    directory (here: a fresh temp dir, far from the Weir checkout) builds on its own."""
    target = os.environ.get("WEIR_PLUGIN_NEW_TARGET", "/var/cache/weir/plugin-new-target")
    for kind, config, stdin, expect in [
        ("transform", ["-c", "header=h", "-c", "value=1"], '{"key":"a","value":"x"}\n', '"headers":[["h","1"]]'),
        ("source", ["-c", "count=2"], "", '"source_offset":"1"'),
        ("sink", [], '{"topic":"t","partition":0,"offset":5,"value":"hi"}\n', "durable (would be committed): t/0/5"),
    ]:
        project = tmp_path / f"my-{kind}"
        made = run_cli(weir_bin, "plugin", "new", str(project), "--kind", kind)
        assert made.returncode == 0, describe_process(made)
        assert (project / ".weir" / "wit" / "types.wit").exists()
        build = subprocess.run(
            ["cargo", "build", "--release", "--target", "wasm32-wasip2"],
            cwd=project, capture_output=True, text=True, timeout=540,
            env={**os.environ, "CARGO_TARGET_DIR": target},
        )  # fmt: skip
        assert build.returncode == 0, build.stderr[-3000:]
        wasm = Path(target) / "wasm32-wasip2" / "release" / f"my_{kind}.wasm"
        ran = run_cli(weir_bin, "plugin", "run", str(wasm), *config, input=stdin, timeout=120)
        assert ran.returncode == 0, describe_process(ran)
        assert expect in ran.stdout + ran.stderr, describe_process(ran)
    again = run_cli(weir_bin, "plugin", "new", str(tmp_path / "my-transform"))
    assert again.returncode != 0 and "is not empty" in again.stderr, describe_process(again)
