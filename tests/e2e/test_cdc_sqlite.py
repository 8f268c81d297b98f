"""Change data capture from SQLite through the real `weir` binary and its REST API.

A SQLite file (WAL mode) with rows is captured by the built-in sqlite-source
(`io.weir.connector.sqlite.SqliteConnector`): the snapshot arrives as `r` events, then
inserts, updates and deletes arrive in commit order with their before and after images and a
tombstone after each delete, in Debezium's envelope written by JsonConverter with schemas.
After a restart of `weir` streaming resumes from the stored offsets: no snapshot again, no
change missed, none repeated (a clean stop commits everything).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import ck_consume_partition, ck_watermarks, wait_until
from test_connect import call, create, get, start_connect, wait_state

CLASS = "io.weir.connector.sqlite.SqliteConnector"
TOPIC = "shop.main.customers"
JSON = "org.apache.kafka.connect.json.JsonConverter"


def make_db(path: Path, journal: str = "WAL") -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, "
        "score REAL, photo BLOB, active BOOLEAN)"
    )
    db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT)")
    db.execute("BEGIN")
    db.execute("INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', 0.1, x'0001ff', 1)")
    db.execute("INSERT INTO customers VALUES (2, 'Bob''s', NULL, 1e300, NULL, 0)")
    db.execute("INSERT INTO customers VALUES (3, 'Cy', 'cy@example.com', -2.5, NULL, NULL)")
    db.execute("INSERT INTO audit VALUES (1, 'not captured')")
    db.execute("COMMIT")
    return db


def records(bootstrap: str, want: int, start: int = 0, timeout: float = 30.0) -> list:
    """The topic's records from `start` once it holds at least `start + want` of them."""

    def probe():
        high = ck_watermarks(bootstrap, TOPIC, 0)[1]
        assert high >= start + want, f"{TOPIC} holds {high} records, want {start + want}"
        return high

    wait_until(probe, timeout=timeout, interval=0.2, what=f"{want} change events")
    got = ck_consume_partition(bootstrap, TOPIC, 0, start, timeout=30)
    return [
        (json.loads(r.key) if r.key is not None else None, json.loads(r.value) if r.value is not None else None)
        for r in got
    ]


def check_envelope(value: dict) -> dict:
    """Debezium's envelope with its schema; returns the payload."""
    assert set(value) == {"schema", "payload"}, value
    schema = value["schema"]
    assert schema["type"] == "struct" and schema["name"] == "shop.main.customers.Envelope", schema
    assert [f["field"] for f in schema["fields"]] == ["before", "after", "source", "op", "ts_ms"], schema
    row = schema["fields"][1]
    assert row["name"] == "shop.main.customers.Value" and row["optional"] is True, row
    types = {f["field"]: (f["type"], f["optional"]) for f in row["fields"]}
    assert types == {
        "id": ("int64", False),
        "name": ("string", False),
        "email": ("string", True),
        "score": ("double", True),
        "photo": ("bytes", True),
        "active": ("boolean", True),
    }, types
    payload = value["payload"]
    source = payload["source"]
    assert source["connector"] == "sqlite" and source["name"] == "shop", source
    assert source["db"] == "shop.db" and source["schema"] == "main" and source["table"] == "customers", source
    assert isinstance(source["ts_ms"], int) and isinstance(source["lsn"], int), source
    assert isinstance(payload["ts_ms"], int), payload
    return payload


@pytest.mark.timeout(180)
def test_sqlite_snapshot_then_changes_in_debeziums_envelope(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = make_db(path)
    broker = start_connect(start_broker, tmp_path)
    config = {
        "connector.class": CLASS,
        "database.path": str(path),
        "topic.prefix": "shop",
        "table.include.list": "main.customers",
        "key.converter": JSON,
        "value.converter": JSON,
    }
    create(broker, "shop-cdc", config)
    wait_state(broker, "shop-cdc", "RUNNING")

    # The snapshot: three `r` events, the last one marked `last`.
    snap = records(broker.bootstrap, 3)
    assert len(snap) == 3, snap
    payloads = [check_envelope(v) for _, v in snap]
    assert [p["op"] for p in payloads] == ["r", "r", "r"]
    assert [p["source"]["snapshot"] for p in payloads] == ["true", "true", "last"]
    assert [k["payload"] for k, _ in snap] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert snap[0][0]["schema"]["name"] == "shop.main.customers.Key"
    assert payloads[0]["before"] is None
    assert payloads[0]["after"] == {
        "id": 1,
        "name": "Ada",
        "email": "ada@example.com",
        "score": 0.1,
        "photo": "AAH/",
        "active": True,
    }
    assert payloads[1]["after"] == {
        "id": 2,
        "name": "Bob's",
        "email": None,
        "score": 1e300,
        "photo": None,
        "active": False,
    }

    # Changes, in commit order (two in one transaction), field by field.
    db.execute("INSERT INTO customers VALUES (4, 'Dee', NULL, 4.25, NULL, 1)")
    db.execute("BEGIN")
    db.execute("UPDATE customers SET email = 'bob@example.com', score = 2 WHERE id = 2")
    db.execute("DELETE FROM customers WHERE id = 3")
    db.execute("COMMIT")
    db.execute("INSERT INTO audit VALUES (2, 'still not captured')")
    changes = records(broker.bootstrap, 4, start=3)
    assert len(changes) == 4, changes
    (k1, c), (k2, u), (k3, d), (k4, tomb) = changes
    c, u, d = check_envelope(c), check_envelope(u), check_envelope(d)
    assert (c["op"], c["before"], c["after"]["name"], c["source"]["snapshot"]) == ("c", None, "Dee", "false")
    assert k1["payload"] == {"id": 4}
    assert u["op"] == "u" and k2["payload"] == {"id": 2}
    assert u["before"]["email"] is None and u["after"]["email"] == "bob@example.com"
    assert u["before"]["score"] == 1e300 and u["after"]["score"] == 2.0
    assert d["op"] == "d" and d["after"] is None and d["before"]["name"] == "Cy"
    assert k3["payload"] == {"id": 3} and k4["payload"] == {"id": 3} and tomb is None
    lsns = [c["source"]["lsn"], u["source"]["lsn"], d["source"]["lsn"]]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3, lsns

    # What the log stored is trimmed from the change table.
    def trimmed():
        left = db.execute("SELECT count(*) FROM _weir_cdc_weir").fetchone()[0]
        assert left == 0, f"{left} changes still in the change table"
        return True

    wait_until(trimmed, timeout=30, interval=0.3, what="the change table trimmed")

    # A restart resumes from the stored offsets: no second snapshot, nothing repeated.
    broker.stop()
    db.execute("UPDATE customers SET name = 'Ada L.' WHERE id = 1")
    broker.start()
    wait_state(broker, "shop-cdc", "RUNNING")
    after = records(broker.bootstrap, 1, start=7)
    assert len(after) == 1, after
    p = check_envelope(after[0][1])
    assert (p["op"], p["before"]["name"], p["after"]["name"]) == ("u", "Ada", "Ada L.")
    time.sleep(1.0)
    assert ck_watermarks(broker.bootstrap, TOPIC, 0)[1] == 8, "nothing else arrives"

    # The audit table was never captured.
    topics = get(broker, "/connectors/shop-cdc/topics")
    assert topics["shop-cdc"]["topics"] == [TOPIC], topics


@pytest.mark.timeout(120)
def test_a_rollback_journal_database_is_captured_too(start_broker, tmp_path):
    """Without WAL, the snapshot's read transaction holds SQLite's shared lock: the connector
    must not write to the file while it is open (it used to trim there, and fail to start)."""
    path = tmp_path / "shop.db"
    db = make_db(path, journal="DELETE")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    broker = start_connect(start_broker, tmp_path)
    create(
        broker,
        "shop-cdc",
        {
            "connector.class": CLASS,
            "database.path": str(path),
            "topic.prefix": "shop",
            "table.include.list": "main.customers",
            "key.converter": JSON,
            "value.converter": JSON,
        },
    )
    wait_state(broker, "shop-cdc", "RUNNING")
    snap = records(broker.bootstrap, 3)
    assert [check_envelope(v)["source"]["snapshot"] for _, v in snap] == ["true", "true", "last"]
    # Once the snapshot is over, writers are not blocked and their changes arrive.
    db.execute("INSERT INTO customers VALUES (4, 'Dee', NULL, 4.25, NULL, 1)")
    (key, value), = records(broker.bootstrap, 1, start=3)
    assert key["payload"] == {"id": 4} and check_envelope(value)["op"] == "c"
    wait_state(broker, "shop-cdc", "RUNNING")


@pytest.mark.timeout(120)
def test_sqlite_source_config_errors_are_clear(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)

    def errors(config: dict) -> dict:
        _, payload = call(broker, "PUT", f"/connector-plugins/{CLASS}/config/validate", config, status=200)
        found = {c["value"]["name"]: c["value"]["errors"] for c in payload["configs"] if c["value"]["errors"]}
        assert payload["error_count"] == len(found), payload
        return found

    missing = tmp_path / "nope.db"
    base = {"connector.class": CLASS, "topic.prefix": "x"}
    assert errors({**base, "database.path": str(missing)}) == {
        "database.path": [f"{missing} is not a file (the SQLite database must exist)"]
    }
    make_db(tmp_path / "shop.db").close()
    found = errors({**base, "database.path": str(tmp_path / "shop.db"), "snapshot.mode": "sometimes"})
    assert list(found) == ["snapshot.mode"] and "sometimes" in found["snapshot.mode"][0], found
    assert errors({**base, "database.path": str(tmp_path / "shop.db")}) == {}
    _, payload = call(
        broker, "POST", "/connectors", {"name": "bad", "config": {**base, "database.path": str(missing)}}, status=400
    )
    assert "database.path" in payload["message"], payload


def capture_objects(db: sqlite3.Connection) -> list:
    """The triggers and tables the connector made in the file, sorted."""
    return sorted(
        (kind, name)
        for kind, name in db.execute("SELECT type, name FROM sqlite_schema WHERE name LIKE '\\_weir\\_cdc\\_%' ESCAPE '\\'")
    )


@pytest.mark.timeout(180)
def test_slot_drop_on_stop_removes_only_its_own_triggers_and_tables(start_broker, tmp_path):
    """With `slot.drop.on.stop=true`, deleting the connector removes its three triggers per
    captured table and its two change tables (so writers stop paying for capture and the file
    stops growing), while another connector's capture of the same file — whose slot name
    starts with this one's — is left whole and keeps streaming; without the key they stay."""
    path = tmp_path / "shop.db"
    db = make_db(path)
    broker = start_connect(start_broker, tmp_path)
    base = {
        "connector.class": CLASS,
        "database.path": str(path),
        "table.include.list": "main.customers",
        "key.converter": JSON,
        "value.converter": JSON,
    }
    create(broker, "dropper", {**base, "topic.prefix": "shop", "slot.name": "s", "slot.drop.on.stop": "true"})
    create(broker, "keeper", {**base, "topic.prefix": "other", "slot.name": "s_2"})
    wait_state(broker, "dropper", "RUNNING")
    wait_state(broker, "keeper", "RUNNING")
    records(broker.bootstrap, 3)
    mine = [
        ("table", "_weir_cdc_s"),
        ("table", "_weir_cdc_s_schemas"),
        ("trigger", "_weir_cdc_s_customers_d"),
        ("trigger", "_weir_cdc_s_customers_i"),
        ("trigger", "_weir_cdc_s_customers_u"),
    ]
    theirs = [(k, n.replace("_weir_cdc_s", "_weir_cdc_s_2", 1)) for k, n in mine]
    def installed():
        assert capture_objects(db) == sorted(mine + theirs), capture_objects(db)
        return True

    wait_until(installed, timeout=30, what="both captures installed")
    call(broker, "DELETE", "/connectors/dropper", status=204)
    def dropped():
        assert capture_objects(db) == sorted(theirs), capture_objects(db)
        return True

    wait_until(dropped, timeout=30, what="the dropper's triggers and change tables gone")
    # The other capture still records and streams.
    db.execute("INSERT INTO customers VALUES (9, 'Ivy', NULL, 9.5, NULL, 1)")

    def arrived():
        high = ck_watermarks(broker.bootstrap, "other.main.customers", 0)[1]
        assert high >= 4, high
        return high

    wait_until(arrived, timeout=30, interval=0.2, what="the keeper's insert")
    got = ck_consume_partition(broker.bootstrap, "other.main.customers", 0, 3, timeout=30)
    assert json.loads(got[0].key)["payload"] == {"id": 9}
    # Without the key, deleting leaves the capture in place.
    call(broker, "DELETE", "/connectors/keeper", status=204)
    wait_until(
        lambda: broker.rest("GET", "/connectors/keeper", None, None)[0] == 404,
        timeout=30,
        what="keeper deleted",
    )
    time.sleep(1)
    assert capture_objects(db) == sorted(theirs)


def test_a_table_created_while_streaming_keeps_rows_written_before_its_triggers(start_broker, tmp_path):
    """A table created (with rows, in the same transaction) while the connector streams: its
    rows arrive as reads marked `incremental`, then its later changes, in order; a table
    dropped and created again the same way is read again. Nothing written before the
    connector saw the table is lost."""
    path = tmp_path / "shop.db"
    db = make_db(path)
    broker = start_connect(start_broker, tmp_path)
    config = {
        "connector.class": CLASS,
        "database.path": str(path),
        "topic.prefix": "shop",
        "key.converter": JSON,
        "value.converter": JSON,
        "value.converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
    }
    create(broker, "shop-cdc", config)
    wait_state(broker, "shop-cdc", "RUNNING")
    records(broker.bootstrap, 3)
    db.execute("BEGIN")
    db.execute("CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO fresh VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 51)])
    db.execute("COMMIT")
    topic = "shop.main.fresh"

    def read(want):
        def probe():
            high = ck_watermarks(broker.bootstrap, topic, 0)[1]
            assert high >= want, high
            return True

        wait_until(probe, timeout=30, interval=0.2, what=f"{want} records in {topic}")
        return [json.loads(r.value) for r in ck_consume_partition(broker.bootstrap, topic, 0, 0, timeout=30)]

    got = read(50)
    assert [(v["op"], v["after"]["id"], v["source"]["snapshot"]) for v in got] == [
        ("r", i, "incremental") for i in range(1, 51)
    ]
    db.execute("UPDATE fresh SET v = 'changed' WHERE id = 7")
    got = read(51)
    assert (got[50]["op"], got[50]["after"], got[50]["source"]["snapshot"]) == ("u", {"id": 7, "v": "changed"}, "false")
    # Dropped and created again with other rows: read again (its old triggers went with it).
    db.execute("BEGIN")
    db.execute("DROP TABLE fresh")
    db.execute("CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO fresh VALUES (100, 'again')")
    db.execute("COMMIT")
    got = read(52)
    assert (got[51]["op"], got[51]["after"]) == ("r", {"id": 100, "v": "again"}), got[51:]
