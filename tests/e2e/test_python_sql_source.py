"""A Python connector on the `sql` capability through the real `weir` binary:
examples/python/sql-source (built by examples/build-plugins, $WEIR_EXAMPLE_PLUGINS), which reads
the new rows of a table by an increasing integer column with the Python SDK's `weir.sql`
helpers and its rows-layout reader (wit/ROWS.md), against a SQLite file it is granted as
`weir.sql.db.url`.

* `weir plugin run`: every SQLite storage class arrives as its JSON value, in the column's order,
  with its source partition and offset; `--committed` resumes after a row.
* `weir up`: installed with `weir plugin install` and created through the REST API, the
  connector writes the table's rows to its topic, then rows added later, and after a restart of
  `weir` resumes from its stored offset: rows added while it was down arrive, none is repeated.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import ck_consume_partition, ck_watermarks, create_topic, describe_process, run_cli, wait_until
from test_connect import create, get, start_connect, wait_state

TOPIC = "shop-items"
PARTITION = {"table": "items"}
# The first start compiles the 18 MB component (CPython inside): slow on a busy machine.
COMPILE_WAIT = 300.0


def component() -> Path:
    built = os.environ.get("WEIR_EXAMPLE_PLUGINS")
    if not built:
        pytest.fail("WEIR_EXAMPLE_PLUGINS is not set; run examples/build-plugins DIR and export it", pytrace=False)
    path = Path(built) / "python-sql-source.wasm"
    if not path.exists():
        pytest.fail(f"{path} was not built by examples/build-plugins", pytrace=False)
    return path


def make_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, photo BLOB, note TEXT)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
        [
            (1, "Ada", 0.1, b"\x00\x01\xff", None),
            (2, "Bob's \"quoted\" é🦀", 1e300, None, ""),
            (3, "Cy", -2.5, b"", "line\nbreak"),
        ],
    )
    return db


def row(i, name, price=None, photo=None, note=None) -> dict:
    return {
        "id": i,
        "name": name,
        "price": price,
        "photo": None if photo is None else base64.b64encode(photo).decode(),
        "note": note,
    }


FIRST = [
    row(1, "Ada", 0.1, b"\x00\x01\xff"),
    row(2, "Bob's \"quoted\" é🦀", 1e300, None, ""),
    row(3, "Cy", -2.5, b"", "line\nbreak"),
]


@pytest.fixture(scope="module")
def compiled_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("compiled"))


def plugin_run(weir_bin, cache, db_path, *args):
    return run_cli(
        weir_bin, "plugin", "run", str(component()),
        "-c", "table=items", "-c", "column=id", "-c", f"topic={TOPIC}", "-c", f"weir.sql.db.url=sqlite://{db_path}",
        *args,
        timeout=COMPILE_WAIT, env={"WEIR_PLUGIN_CACHE": cache, "RUST_LOG": "info"},
    )  # fmt: skip


@pytest.mark.timeout(600)
def test_plugin_run_reads_every_value_and_resumes_after_a_committed_row(weir_bin, compiled_cache, tmp_path):
    path = tmp_path / "shop.db"
    make_db(path).close()
    r = plugin_run(weir_bin, compiled_cache, path, "--batch", "2")
    assert r.returncode == 0, describe_process(r)
    out = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [json.loads(o["value"]) for o in out] == FIRST, describe_process(r)
    assert [json.loads(o["key"]) for o in out] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert {o["topic"] for o in out} == {TOPIC}
    assert [json.loads(o["source_partition"]) for o in out] == [PARTITION] * 3
    assert [json.loads(o["source_offset"]) for o in out] == [{"incrementing": i} for i in (1, 2, 3)]
    # The column order of the table, and the type names the host reports reach the plugin.
    assert list(json.loads(out[0]["value"])) == ["id", "name", "price", "photo", "note"]
    assert "columns: id INTEGER, name TEXT, price REAL, photo BLOB, note TEXT" in r.stderr, describe_process(r)

    r = plugin_run(weir_bin, compiled_cache, path, "--committed", '{"table":"items"}={"incrementing":2}')
    assert r.returncode == 0, describe_process(r)
    assert [json.loads(json.loads(line)["value"])["id"] for line in r.stdout.splitlines() if line.strip()] == [3]
    assert "reading items by id after 2" in r.stderr, describe_process(r)

    # A column that does not exist is the config's error, named by the plugin.
    r = run_cli(
        weir_bin, "plugin", "run", str(component()), "-c", "table=items", "-c", "column=nope", "-c", "topic=t",
        "-c", f"weir.sql.db.url=sqlite://{path}",
        timeout=COMPILE_WAIT, env={"WEIR_PLUGIN_CACHE": compiled_cache},
    )  # fmt: skip
    assert r.returncode != 0, describe_process(r)
    assert "column: cannot read nope of items: " in r.stderr and "no such column" in r.stderr, describe_process(r)


def records(bootstrap: str, want: int, start: int = 0, timeout: float = 60.0) -> list:
    """The topic's records from `start` once it holds at least `start + want`: (key, value) JSON."""

    def probe():
        high = ck_watermarks(bootstrap, TOPIC, 0)[1]
        assert high >= start + want, f"{TOPIC} holds {high} records, want {start + want}"
        return high

    wait_until(probe, timeout=timeout, interval=0.2, what=f"{want} rows in {TOPIC}")
    got = ck_consume_partition(bootstrap, TOPIC, 0, start, timeout=30)
    return [(json.loads(r.key), json.loads(r.value)) for r in got]


def stored_offset(broker, name: str):
    offsets = get(broker, f"/connectors/{name}/offsets")["offsets"]
    return [(o["partition"], o["offset"]) for o in offsets]


@pytest.mark.timeout(900)
def test_connector_reads_new_rows_and_resumes_after_a_restart(weir_bin, start_broker, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    installed = run_cli(weir_bin, "plugin", "install", str(component()), "--dir", str(plugins))
    assert installed.returncode == 0, describe_process(installed)
    assert (plugins / "sql-source" / "0.1.0.wasm").read_bytes() == component().read_bytes()

    path = tmp_path / "shop.db"
    db = make_db(path)
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, TOPIC, 1)
    create(broker, "items-src", {
        "connector.class": "sql-source",
        "table": "items",
        "column": "id",
        "topic": TOPIC,
        "poll.interval.ms": "100",
        "weir.sql.db.url": f"sqlite://{path}",
    })  # fmt: skip
    wait_state(broker, "items-src", "RUNNING", timeout=COMPILE_WAIT)
    # The grant (it may carry a password) is never shown.
    assert get(broker, "/connectors/items-src/config")["weir.sql.db.url"] == "[hidden]"

    # The rows already in the table, in order, then rows added while it runs.
    first = records(broker.bootstrap, 3, timeout=COMPILE_WAIT)
    assert first == [({"id": v["id"]}, v) for v in FIRST], first
    db.execute("INSERT INTO items (id, name, price) VALUES (4, 'Dee', 4.25)")
    db.executemany("INSERT INTO items (id, name) VALUES (?, ?)", [(10, "ten"), (7, "seven")])
    later = records(broker.bootstrap, 3, start=3)
    assert [v for _, v in later] == [row(4, "Dee", 4.25), row(7, "seven"), row(10, "ten")], later

    def offset_stored():
        assert stored_offset(broker, "items-src") == [(PARTITION, {"incrementing": 10})]
        return True

    wait_until(offset_stored, timeout=30, interval=0.3, what="the offset of row 10 stored")

    # A restart resumes after the stored offset: rows added while weir was down arrive, none
    # of the six before them comes again.
    broker.stop()
    db.executemany("INSERT INTO items (id, name) VALUES (?, ?)", [(11, "eleven"), (12, "twelve")])
    db.execute("UPDATE items SET name = 'changed' WHERE id = 1")  # incrementing mode: not seen
    broker.start()
    wait_state(broker, "items-src", "RUNNING", timeout=COMPILE_WAIT)
    after = records(broker.bootstrap, 2, start=6, timeout=COMPILE_WAIT)
    assert [v for _, v in after] == [row(11, "eleven"), row(12, "twelve")], after
    db.execute("INSERT INTO items (id, name) VALUES (13, 'thirteen')")
    (key, value), = records(broker.bootstrap, 1, start=8)
    assert key == {"id": 13} and value == row(13, "thirteen")
    time.sleep(1.0)
    assert ck_watermarks(broker.bootstrap, TOPIC, 0)[1] == 9, "nothing else arrives"
    wait_until(lambda: stored_offset(broker, "items-src") == [(PARTITION, {"incrementing": 13})] or None,
               timeout=30, interval=0.3, what="the offset of row 13 stored")
    status = get(broker, "/connectors/items-src/status")
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status
    db.close()
