"""Debezium's ExtractNewRecordState transform (`io.debezium.transforms.ExtractNewRecordState`)
in the runtime's transform chain, through the real `weir` binary: change events from the
SQLite source land as plain rows, written by JsonConverter with the row's schema.

* default config: creates, updates and snapshot reads are the `after` row; deletes, their
  tombstones and anything else are dropped;
* `delete.handling.mode=rewrite` with `drop.tombstones=false` and `add.fields`/`add.headers`:
  every row carries `__deleted` ("true" for a delete, whose row is its `before`) and the
  metadata fields, with their types in the schema; tombstones stay; headers carry `op`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from helpers import ck_consume_partition, list_topic_names, wait_until
from test_connect import create, start_connect, wait_state

CLASS = "io.weir.connector.sqlite.SqliteConnector"
JSON = "org.apache.kafka.connect.json.JsonConverter"


def make_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL)")
    db.execute("INSERT INTO items VALUES (1, 'pen', 1.5), (2, 'ink', 12.0)")
    return db


def records(bootstrap: str, topic: str, want: int) -> list:
    def probe():
        assert topic in list_topic_names(bootstrap)
        got = ck_consume_partition(bootstrap, topic, 0, 0, timeout=30)
        assert len(got) >= want, f"{len(got)} of {want}"
        return got

    return wait_until(probe, timeout=30, interval=0.3, what=f"{want} records in {topic}")


def config(path: Path, prefix: str, **unwrap) -> dict:
    c = {
        "connector.class": CLASS,
        "database.path": str(path),
        "topic.prefix": prefix,
        # A change table of its own: two captures of one file must not trim each other's.
        "slot.name": prefix,
        "key.converter": JSON,
        "value.converter": JSON,
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
    }
    c.update({f"transforms.unwrap.{k}": v for k, v in unwrap.items()})
    return c


def test_unwrap_writes_plain_rows_with_their_schema(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = make_db(path)
    broker = start_connect(start_broker, tmp_path)
    create(broker, "plain", config(path, "plain"))
    create(
        broker,
        "marked",
        config(
            path,
            "marked",
            **{
                "delete.handling.mode": "rewrite",
                "drop.tombstones": "false",
                "add.fields": "op,table,source.ts_ms",
                "add.headers": "op",
            },
        ),
    )
    wait_state(broker, "plain", "RUNNING")
    wait_state(broker, "marked", "RUNNING")
    records(broker.bootstrap, "plain.main.items", 2)
    records(broker.bootstrap, "marked.main.items", 2)
    db.execute("UPDATE items SET price = 2.0 WHERE id = 1")
    db.execute("DELETE FROM items WHERE id = 2")
    db.execute("INSERT INTO items VALUES (3, 'pad', NULL)")

    # Default: rows only; the delete and its tombstone are gone.
    got = records(broker.bootstrap, "plain.main.items", 4)
    values = [json.loads(r.value) for r in got]
    assert [v["payload"] for v in values] == [
        {"id": 1, "name": "pen", "price": 1.5},
        {"id": 2, "name": "ink", "price": 12.0},
        {"id": 1, "name": "pen", "price": 2.0},
        {"id": 3, "name": "pad", "price": None},
    ]
    schema = values[0]["schema"]
    assert schema["type"] == "struct" and schema["name"] == "plain.main.items.Value", schema
    assert [(f["field"], f["type"], f["optional"]) for f in schema["fields"]] == [
        ("id", "int64", False),
        ("name", "string", False),
        ("price", "double", True),
    ]
    assert [json.loads(r.key)["payload"] for r in got] == [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 3}]

    # rewrite + tombstones kept + metadata.
    got = records(broker.bootstrap, "marked.main.items", 6)
    values = [json.loads(r.value) if r.value is not None else None for r in got]
    payloads = [v and v["payload"] for v in values]
    assert [(p and p["id"], p and p["__deleted"], p and p["__op"]) for p in payloads] == [
        (1, "false", "r"),
        (2, "false", "r"),
        (1, "false", "u"),
        (2, "true", "d"),
        (None, None, None),
        (3, "false", "c"),
    ]
    assert payloads[3]["name"] == "ink", "a delete is its before row"
    assert all(p is None or p["__table"] == "items" and isinstance(p["__source_ts_ms"], int) for p in payloads)
    fields = {f["field"]: (f["type"], f["optional"]) for f in values[0]["schema"]["fields"]}
    assert fields["__deleted"] == ("string", True) and fields["__op"] == ("string", True)
    assert fields["__source_ts_ms"] == ("int64", True), fields
    assert [dict(r.headers or []).get("__op") for r in got] == [b"r", b"r", b"u", b"d", None, b"c"]
