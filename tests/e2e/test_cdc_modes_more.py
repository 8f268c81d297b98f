"""Snapshot modes, tombstones, the SQLite source's exclude list and the SQL sink's update mode
and value keys, through the real `weir` binary and its REST API.

The PostgreSQL tests use the cluster `scripts/test` starts (WEIR_TEST_PG_URL, wal_level=logical;
one database and slot per test, test_cdc_postgres's PgDb) and are skipped without it; the SQLite
tests need nothing. Records are read back as JsonConverter writes them (with schemas).

* `snapshot.mode=always` (postgres-source and sqlite-source): the first start snapshots the rows
  already there (`r`, the very last one `last`); after a clean stop and start of `weir` (rows
  changed meanwhile) a new snapshot gives exactly the table as it is now, and changes keep
  streaming after it. PostgreSQL's second snapshot is read beside an existing slot, so the stream
  may repeat the changes made while stopped (in commit order, never others); SQLite's snapshot
  holds every change up to its watermark and repeats none. Either way, the latest snapshot and
  the changes after it replay to exactly the table.
* `snapshot.mode=when_needed`: a restart while the slot (PostgreSQL) / the change table and its
  triggers (SQLite) still exist resumes streaming, no second snapshot; once they were dropped
  while `weir` was stopped, the next start snapshots again and that snapshot holds the rows
  changed while nothing captured them, so nothing is lost.
* `snapshot.mode=no_data` on a table with rows: no `r` record; changes made once the capture is
  in place (slot streaming / triggers installed) arrive.
* `tombstones.on.delete=false`: a delete gives its `d` event and no tombstone (nor does a primary
  key update, which is a `d` and a `c`).
* sqlite-source `table.exclude.list` (regular expressions over `main.<table>` or `<table>`): the
  excluded tables get no trigger, no topic and no record; the others are snapshotted and streamed.
* sql-sink `insert.mode=update` (PostgreSQL and SQLite targets): a record (plain row or Debezium
  change event) for an existing row updates it, one for a missing row changes nothing (no insert,
  no failure).
* sql-sink `primary.key.mode=record_value` with `primary.key.fields=region,sku`: the key is taken
  from the value (the Kafka key, constant or null, is ignored): `upsert` with `schema.evolution`
  creates the table with that primary key and keeps one row per (region, sku); `update` changes
  only the (region, sku) rows the table already has.

Negative checks ("nothing else arrived", "nothing was written") are ordered, not timed: the last
change of each step is one that must arrive (or be written), and connectors hand changes out (and
sinks write records) in order, so once it is there anything wrongly emitted before it is too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from helpers import ck_consume_partition, ck_produce_ok, ck_watermarks, create_topic, list_topic_names, wait_until
from test_connect import create, get, start_connect, wait_state

PG_URL = os.environ.get("WEIR_TEST_PG_URL")
if PG_URL:
    import test_cdc_postgres as pg  # psycopg is only needed (and only installed for sure) with PostgreSQL

SQLITE_CLASS = "io.weir.connector.sqlite.SqliteConnector"
SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
JSON = "org.apache.kafka.connect.json.JsonConverter"
PREFIX = "shop"
WAIT = 30.0


@pytest.fixture
def pgdb():
    """A database of its own (test_cdc_postgres.PgDb); request it before `start_broker` so that
    the broker stops first and frees the slot."""
    if not PG_URL:
        pytest.skip("WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical)")
    db = pg.PgDb()
    yield db
    db.drop()


# ---------------------------------------------------------------------------
# Reading topics
# ---------------------------------------------------------------------------


def pg_topic(table: str) -> str:
    return f"{PREFIX}.public.{table}"


def sqlite_topic(table: str) -> str:
    return f"{PREFIX}.main.{table}"


def high(bootstrap: str, topic: str) -> int:
    return ck_watermarks(bootstrap, topic, 0)[1]


def records(bootstrap: str, topic: str, want: int, start: int = 0, timeout: float = WAIT) -> list:
    """(key, value) of the topic's records from `start` once it holds at least `start + want`."""

    def probe():
        have = high(bootstrap, topic)
        assert have >= start + want, f"{topic} holds {have} records, want {start + want}"
        return True

    wait_until(probe, timeout=timeout, interval=0.2, what=f"{want} records in {topic} from offset {start}")
    got = ck_consume_partition(bootstrap, topic, 0, start, timeout=30)
    return [
        (json.loads(r.key) if r.key is not None else None, json.loads(r.value) if r.value is not None else None)
        for r in got
    ]


def event(kv: tuple) -> tuple:
    """A record, summed up: ("tombstone", id), ("d", id) or (op, id, qty) (`r` with its
    `source.snapshot` flag: ("r", flag, id, qty))."""
    key, value = kv
    if value is None:
        return ("tombstone", key["payload"]["id"])
    p = value["payload"]
    assert set(p) == {"before", "after", "source", "op", "ts_ms"}, p
    if p["op"] == "d":
        assert p["after"] is None and key["payload"] == {"id": p["before"]["id"]}, (key, p)
        return ("d", p["before"]["id"])
    row = p["after"]
    assert key["payload"] == {"id": row["id"]}, (key, p)
    if p["op"] == "r":
        assert p["before"] is None, p
        return ("r", p["source"]["snapshot"], row["id"], row["qty"])
    assert p["source"]["snapshot"] == "false", p
    return (p["op"], row["id"], row["qty"])


def events(got: list) -> list:
    return [event(kv) for kv in got]


def snapshot_rows(evs: list) -> dict:
    """The rows of a snapshot's records, checking their flags: `true` ... `last`."""
    assert [e[0] for e in evs] == ["r"] * len(evs), evs
    assert [e[1] for e in evs] == ["true"] * (len(evs) - 1) + ["last"], evs
    rows = {e[2]: e[3] for e in evs}
    assert len(rows) == len(evs), f"a row twice in one snapshot: {evs}"
    return rows


def replay(evs: list) -> dict:
    """The table the records describe, applied in order."""
    state: dict = {}
    for e in evs:
        if e[0] == "d":
            state.pop(e[1], None)
        elif e[0] == "r":
            state[e[2]] = e[3]
        elif e[0] in ("c", "u"):
            state[e[1]] = e[2]
    return state


# ---------------------------------------------------------------------------
# The databases
# ---------------------------------------------------------------------------

STOCK_DDL = "CREATE TABLE stock (id int4 PRIMARY KEY, qty int4 NOT NULL)"


def pg_config(db, **extra) -> dict:
    """test_cdc_postgres's Debezium config. `database.sslmode=disable`: the test server has no
    TLS, and TLS is not what these tests are about."""
    return db.config(**{"database.sslmode": "disable", **extra})


def pg_rows(db) -> dict:
    return dict(db.conn.execute("SELECT id, qty FROM stock").fetchall())


def pg_slot_streaming(db) -> bool:
    row = db.one("SELECT active FROM pg_replication_slots WHERE slot_name = %s", db.slot)
    assert row is not None and row[0], f"slot {db.slot} not streaming yet: {row}"
    return True


def pg_drop_slot(db) -> None:
    """Drops the connector's slot (`weir` is stopped; the server may take a moment to see its
    replication session end)."""

    def dropped():
        with pg.admin() as c:
            c.execute("SELECT pg_drop_replication_slot(%s)", (db.slot,))
        return True

    wait_until(dropped, timeout=WAIT, interval=0.2, what=f"slot {db.slot} dropped")
    assert db.one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", db.slot)[0] == 0


def sqlite_db(path: Path, rows: dict) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO stock VALUES (?, ?)", sorted(rows.items()))
    db.execute("COMMIT")
    return db


def sqlite_rows(db: sqlite3.Connection) -> dict:
    return dict(db.execute("SELECT id, qty FROM stock").fetchall())


def sqlite_config(path: Path, **extra) -> dict:
    return {
        "connector.class": SQLITE_CLASS,
        "database.path": str(path),
        "topic.prefix": PREFIX,
        "key.converter": JSON,
        "value.converter": JSON,
        **extra,
    }


def capture_objects(db: sqlite3.Connection) -> list:
    """The triggers and tables the connector made in the file, sorted."""
    return sorted(
        (kind, name)
        for kind, name in db.execute(
            "SELECT type, name FROM sqlite_schema WHERE name LIKE '\\_weir\\_cdc\\_%' ESCAPE '\\'"
        )
    )


def sqlite_triggers(db: sqlite3.Connection, table: str) -> list:
    return sorted(
        r[0]
        for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?", (table,))
    )


def sqlite_drop_capture(db: sqlite3.Connection, slot: str = "weir") -> None:
    """What the README says to do by hand: drop the change table and the slot's triggers."""
    triggers = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
        (f"\\_weir\\_cdc\\_{slot}\\_%",),
    )]  # fmt: skip
    assert len(triggers) == 3, triggers
    db.execute("BEGIN IMMEDIATE")
    for t in triggers:
        db.execute(f'DROP TRIGGER "{t}"')
    db.execute(f'DROP TABLE "_weir_cdc_{slot}"')
    db.execute("COMMIT")


# ---------------------------------------------------------------------------
# 1. snapshot.mode=always
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_snapshot_mode_always(pgdb, start_broker, tmp_path):
    pgdb.run(STOCK_DDL, "INSERT INTO stock VALUES (1, 10), (2, 20), (3, 30)")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "always", pg_config(pgdb, **{"snapshot.mode": "always"}))
    wait_state(broker, "always", "RUNNING")
    topic = pg_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 3))) == {1: 10, 2: 20, 3: 30}
    pgdb.run("INSERT INTO stock VALUES (4, 40)")
    assert events(records(broker.bootstrap, topic, 1, start=3)) == [("c", 4, 40)]

    # Stopped cleanly; rows change meanwhile.
    assert broker.stop() == 0
    pgdb.run("UPDATE stock SET qty = 11 WHERE id = 1", "DELETE FROM stock WHERE id = 2",
             "INSERT INTO stock VALUES (5, 50)")  # fmt: skip
    while_stopped = [("u", 1, 11), ("d", 2), ("tombstone", 2), ("c", 5, 50)]
    broker.start()
    wait_state(broker, "always", "RUNNING")
    now = pg_rows(pgdb)
    assert now == {1: 11, 3: 30, 4: 40, 5: 50}
    second = events(records(broker.bootstrap, topic, len(now), start=4))[: len(now)]
    assert snapshot_rows(second) == now, "a new snapshot: the table as it is now"

    # Streaming goes on after the snapshot.
    pgdb.run("UPDATE stock SET qty = 31 WHERE id = 3", "INSERT INTO stock VALUES (6, 60)")

    def streamed():
        got = events(records(broker.bootstrap, topic, len(now), start=4))
        assert ("c", 6, 60) in got, got[len(now):]
        return got

    got = wait_until(streamed, timeout=WAIT, interval=0.3, what="the changes after the second snapshot")
    after = got[len(now):]
    # The snapshot was read beside the existing slot: the changes made while stopped may come
    # again (in commit order); nothing else comes before the new changes, which come last.
    assert after[-2:] == [("u", 3, 31), ("c", 6, 60)], after
    repeated = after[:-2]
    print(f"after the second snapshot: {len(repeated)} changes made while stopped came again, then {after[-2:]}")
    it = iter(while_stopped)
    assert all(e in it for e in repeated), f"only changes made while stopped, in order: {repeated}"
    assert replay(second + after) == pg_rows(pgdb) == {1: 11, 3: 31, 4: 40, 5: 50, 6: 60}
    assert not [e for e in after if e[0] == "r"], after
    wait_state(broker, "always", "RUNNING")


@pytest.mark.timeout(120)
def test_sqlite_snapshot_mode_always(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = sqlite_db(path, {1: 10, 2: 20, 3: 30})
    broker = start_connect(start_broker, tmp_path)
    create(broker, "always", sqlite_config(path, **{"snapshot.mode": "always"}))
    wait_state(broker, "always", "RUNNING")
    topic = sqlite_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 3))) == {1: 10, 2: 20, 3: 30}
    db.execute("INSERT INTO stock VALUES (4, 40)")
    assert events(records(broker.bootstrap, topic, 1, start=3)) == [("c", 4, 40)]

    assert broker.stop() == 0
    db.execute("UPDATE stock SET qty = 11 WHERE id = 1")
    db.execute("DELETE FROM stock WHERE id = 2")
    db.execute("INSERT INTO stock VALUES (5, 50)")
    broker.start()
    wait_state(broker, "always", "RUNNING")
    now = sqlite_rows(db)
    assert now == {1: 11, 3: 30, 4: 40, 5: 50}
    second = events(records(broker.bootstrap, topic, len(now), start=4))[: len(now)]
    assert snapshot_rows(second) == now, "a new snapshot: the table as it is now"

    # The snapshot holds every change up to its watermark: the stream goes on with the next
    # change, repeating none.
    db.execute("BEGIN")
    db.execute("UPDATE stock SET qty = 31 WHERE id = 3")
    db.execute("INSERT INTO stock VALUES (6, 60)")
    db.execute("COMMIT")
    after = events(records(broker.bootstrap, topic, 2, start=4 + len(now)))
    assert after == [("u", 3, 31), ("c", 6, 60)], after
    assert replay(second + after) == sqlite_rows(db) == {1: 11, 3: 31, 4: 40, 5: 50, 6: 60}
    wait_state(broker, "always", "RUNNING")


# ---------------------------------------------------------------------------
# 2. snapshot.mode=when_needed
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_snapshot_mode_when_needed(pgdb, start_broker, tmp_path):
    pgdb.run(STOCK_DDL, "INSERT INTO stock VALUES (1, 10), (2, 20), (3, 30)")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "needed", pg_config(pgdb, **{"snapshot.mode": "when_needed"}))
    wait_state(broker, "needed", "RUNNING")
    topic = pg_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 3))) == {1: 10, 2: 20, 3: 30}

    # The slot is still there: a restart resumes the stream, no snapshot.
    assert broker.stop() == 0
    pgdb.run("UPDATE stock SET qty = 11 WHERE id = 1")
    broker.start()
    wait_state(broker, "needed", "RUNNING")
    assert events(records(broker.bootstrap, topic, 1, start=3)) == [("u", 1, 11)]
    pgdb.run("INSERT INTO stock VALUES (4, 40)")
    assert events(records(broker.bootstrap, topic, 2, start=3)) == [("u", 1, 11), ("c", 4, 40)]

    # The slot dropped while `weir` is stopped, rows changed while nothing captures them: the
    # next start snapshots again, and the snapshot holds those changes.
    assert broker.stop() == 0
    pg_drop_slot(pgdb)
    pgdb.run("UPDATE stock SET qty = 33 WHERE id = 3", "DELETE FROM stock WHERE id = 2",
             "INSERT INTO stock VALUES (5, 50)")  # fmt: skip
    broker.start()
    wait_state(broker, "needed", "RUNNING")
    now = pg_rows(pgdb)
    assert now == {1: 11, 3: 33, 4: 40, 5: 50}
    second = events(records(broker.bootstrap, topic, len(now), start=5))
    assert snapshot_rows(second) == now, second
    wait_until(lambda: pg_slot_streaming(pgdb), timeout=WAIT, interval=0.2, what="a new slot streaming")
    pgdb.run("INSERT INTO stock VALUES (6, 60)")
    assert events(records(broker.bootstrap, topic, 1, start=5 + len(now))) == [("c", 6, 60)]
    assert replay(second + [("c", 6, 60)]) == pg_rows(pgdb)
    wait_state(broker, "needed", "RUNNING")


@pytest.mark.timeout(120)
def test_sqlite_snapshot_mode_when_needed(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = sqlite_db(path, {1: 10, 2: 20, 3: 30})
    broker = start_connect(start_broker, tmp_path)
    create(broker, "needed", sqlite_config(path, **{"snapshot.mode": "when_needed"}))
    wait_state(broker, "needed", "RUNNING")
    topic = sqlite_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 3))) == {1: 10, 2: 20, 3: 30}

    # The change table is still there: a restart resumes the stream, no snapshot.
    assert broker.stop() == 0
    db.execute("UPDATE stock SET qty = 11 WHERE id = 1")
    broker.start()
    wait_state(broker, "needed", "RUNNING")
    assert events(records(broker.bootstrap, topic, 1, start=3)) == [("u", 1, 11)]
    db.execute("INSERT INTO stock VALUES (4, 40)")
    assert events(records(broker.bootstrap, topic, 2, start=3)) == [("u", 1, 11), ("c", 4, 40)]

    # The change table and triggers dropped while `weir` is stopped, rows changed while nothing
    # records them: the next start snapshots again, and the snapshot holds those changes.
    assert broker.stop() == 0
    sqlite_drop_capture(db)
    db.execute("UPDATE stock SET qty = 33 WHERE id = 3")
    db.execute("DELETE FROM stock WHERE id = 2")
    db.execute("INSERT INTO stock VALUES (5, 50)")
    broker.start()
    wait_state(broker, "needed", "RUNNING")
    now = sqlite_rows(db)
    assert now == {1: 11, 3: 33, 4: 40, 5: 50}
    second = events(records(broker.bootstrap, topic, len(now), start=5))
    assert snapshot_rows(second) == now, second
    db.execute("INSERT INTO stock VALUES (6, 60)")
    assert events(records(broker.bootstrap, topic, 1, start=5 + len(now))) == [("c", 6, 60)]
    assert replay(second + [("c", 6, 60)]) == sqlite_rows(db)
    assert sqlite_triggers(db, "stock") == ["_weir_cdc_weir_stock_d", "_weir_cdc_weir_stock_i", "_weir_cdc_weir_stock_u"]
    wait_state(broker, "needed", "RUNNING")


# ---------------------------------------------------------------------------
# 3. snapshot.mode=no_data
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_snapshot_mode_no_data(pgdb, start_broker, tmp_path):
    pgdb.run(STOCK_DDL, "INSERT INTO stock VALUES (1, 10), (2, 20), (3, 30)")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "nodata", pg_config(pgdb, **{"snapshot.mode": "no_data"}))
    wait_state(broker, "nodata", "RUNNING")
    # Changes made once the slot streams are captured (earlier ones need not be).
    wait_until(lambda: pg_slot_streaming(pgdb), timeout=WAIT, interval=0.2, what="the slot streaming")
    pgdb.run("INSERT INTO stock VALUES (4, 40)", "UPDATE stock SET qty = 11 WHERE id = 1",
             "DELETE FROM stock WHERE id = 2")  # fmt: skip
    topic = pg_topic("stock")
    # The first records of the topic are these changes: no snapshot record before them.
    assert events(records(broker.bootstrap, topic, 4)) == [("c", 4, 40), ("u", 1, 11), ("d", 2), ("tombstone", 2)]
    wait_state(broker, "nodata", "RUNNING")


@pytest.mark.timeout(120)
def test_sqlite_snapshot_mode_no_data(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = sqlite_db(path, {1: 10, 2: 20, 3: 30})
    broker = start_connect(start_broker, tmp_path)
    create(broker, "nodata", sqlite_config(path, **{"snapshot.mode": "no_data"}))
    wait_state(broker, "nodata", "RUNNING")

    # Changes made once the triggers are installed are captured.
    def installed():
        assert len(sqlite_triggers(db, "stock")) == 3, capture_objects(db)
        return True

    wait_until(installed, timeout=WAIT, interval=0.1, what="the triggers installed")
    db.execute("INSERT INTO stock VALUES (4, 40)")
    db.execute("UPDATE stock SET qty = 11 WHERE id = 1")
    db.execute("DELETE FROM stock WHERE id = 2")
    topic = sqlite_topic("stock")
    assert events(records(broker.bootstrap, topic, 4)) == [("c", 4, 40), ("u", 1, 11), ("d", 2), ("tombstone", 2)]
    wait_state(broker, "nodata", "RUNNING")


# ---------------------------------------------------------------------------
# 4. tombstones.on.delete=false
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_no_tombstones_on_delete(pgdb, start_broker, tmp_path):
    pgdb.run(STOCK_DDL, "INSERT INTO stock VALUES (1, 10), (2, 20)")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "notomb", pg_config(pgdb, **{"tombstones.on.delete": "false"}))
    wait_state(broker, "notomb", "RUNNING")
    topic = pg_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 2))) == {1: 10, 2: 20}
    pgdb.run("DELETE FROM stock WHERE id = 1", "UPDATE stock SET id = 20 WHERE id = 2",
             "INSERT INTO stock VALUES (3, 30)")  # fmt: skip
    got = records(broker.bootstrap, topic, 4, start=2)
    assert events(got) == [("d", 1), ("d", 2), ("c", 20, 20), ("c", 3, 30)], events(got)
    assert all(v is not None for _, v in got), "no tombstone"
    wait_state(broker, "notomb", "RUNNING")


@pytest.mark.timeout(120)
def test_sqlite_no_tombstones_on_delete(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = sqlite_db(path, {1: 10, 2: 20})
    broker = start_connect(start_broker, tmp_path)
    create(broker, "notomb", sqlite_config(path, **{"tombstones.on.delete": "false"}))
    wait_state(broker, "notomb", "RUNNING")
    topic = sqlite_topic("stock")
    assert snapshot_rows(events(records(broker.bootstrap, topic, 2))) == {1: 10, 2: 20}
    db.execute("DELETE FROM stock WHERE id = 1")
    db.execute("UPDATE stock SET id = 20 WHERE id = 2")
    db.execute("INSERT INTO stock VALUES (3, 30)")
    got = records(broker.bootstrap, topic, 4, start=2)
    assert events(got) == [("d", 1), ("d", 2), ("c", 20, 20), ("c", 3, 30)], events(got)
    assert all(v is not None for _, v in got), "no tombstone"
    wait_state(broker, "notomb", "RUNNING")


# ---------------------------------------------------------------------------
# 5. sqlite-source table.exclude.list
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sqlite_table_exclude_list(start_broker, tmp_path):
    """`main\\.audit` (the qualified form) and `secret_.*` (the bare name) are left out;
    `stock` and `secretive` (which `secret_.*` does not match: the expressions are anchored)
    are captured."""
    path = tmp_path / "shop.db"
    db = sqlite_db(path, {1: 10})
    for table in ("audit", "secret_notes", "secretive"):
        db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)")
        db.execute(f"INSERT INTO {table} VALUES (1, 1)")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "excl", sqlite_config(path, **{"table.exclude.list": "main\\.audit, secret_.*"}))
    wait_state(broker, "excl", "RUNNING")
    stock, secretive = sqlite_topic("stock"), sqlite_topic("secretive")
    snap = events(records(broker.bootstrap, secretive, 1)) + events(records(broker.bootstrap, stock, 1))
    # Tables in name order: `stock` is the last one read.
    assert snap == [("r", "true", 1, 1), ("r", "last", 1, 10)], snap

    for table in ("audit", "secret_notes", "secretive"):
        db.execute(f"INSERT INTO {table} VALUES (2, 2)")
        db.execute(f"UPDATE {table} SET qty = 3 WHERE id = 1")
    db.execute("INSERT INTO stock VALUES (2, 20)")
    assert events(records(broker.bootstrap, stock, 1, start=1)) == [("c", 2, 20)]
    assert events(records(broker.bootstrap, secretive, 2, start=1)) == [("c", 2, 2), ("u", 1, 3)]

    names = list_topic_names(broker.bootstrap)
    assert sqlite_topic("audit") not in names and sqlite_topic("secret_notes") not in names, sorted(names)
    topics = get(broker, "/connectors/excl/topics")["excl"]["topics"]
    assert sorted(topics) == [secretive, stock], topics
    # Writers to the excluded tables pay nothing: no triggers there.
    assert sqlite_triggers(db, "audit") == [] and sqlite_triggers(db, "secret_notes") == []
    assert len(sqlite_triggers(db, "stock")) == 3 and len(sqlite_triggers(db, "secretive")) == 3
    wait_state(broker, "excl", "RUNNING")


# ---------------------------------------------------------------------------
# 6. The SQL sink: insert.mode=update, primary.key.mode=record_value
# ---------------------------------------------------------------------------


class Target:
    """The sink's database: a PostgreSQL database of the test cluster or a SQLite file."""

    def __init__(self, dialect: str, tmp_path: Path):
        self.dialect = dialect
        if dialect == "postgres":
            self.pg = pg.PgDb()
            u = pg._URL
            self.url = f"jdbc:postgresql://{u.hostname}:{u.port or 5432}/{self.pg.name}"
            self.login = {"connection.username": urllib.parse.unquote(u.username or ""),
                          "connection.password": pg.PG_PASSWORD}  # fmt: skip
        else:
            self.path = tmp_path / "target.db"
            self.url = f"jdbc:sqlite:{self.path}"
            self.login = {}

    def run(self, *statements: str) -> None:
        if self.dialect == "postgres":
            self.pg.run(*statements)
            return
        con = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            for s in statements:
                con.execute(s)
        finally:
            con.close()

    def select(self, query: str) -> list:
        if self.dialect == "postgres":
            return [tuple(r) for r in self.pg.conn.execute(query).fetchall()]
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()

    def primary_key(self, table: str) -> list:
        if self.dialect == "postgres":
            query = ("SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                     f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '{table}'::regclass AND i.indisprimary")  # fmt: skip
        else:
            query = f"SELECT name FROM pragma_table_info('{table}') WHERE pk > 0"
        return sorted(r[0] for r in self.select(query))

    def columns(self, table: str) -> list:
        if self.dialect == "postgres":
            query = ("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' "
                     f"AND table_name = '{table}' ORDER BY ordinal_position")  # fmt: skip
        else:
            query = f"SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        return [r[0] for r in self.select(query)]

    def drop(self) -> None:
        if self.dialect == "postgres":
            self.pg.drop()


@pytest.fixture(params=["postgres", "sqlite"])
def target(request, tmp_path):
    """Request it before `start_broker`: the broker (and the sink's connections) stop first."""
    if request.param == "postgres" and not PG_URL:
        pytest.skip("WEIR_TEST_PG_URL is not set")
    t = Target(request.param, tmp_path)
    yield t
    t.drop()


def field(name: str, kind: str, optional: bool = True) -> dict:
    return {"field": name, "type": kind, "optional": optional}


def doc(name: str, fields: list, payload) -> bytes:
    """A JsonConverter (schemas.enable=true) document of a struct."""
    return json.dumps({"schema": {"type": "struct", "name": name, "optional": False, "fields": fields},
                       "payload": payload}).encode()  # fmt: skip


def sink_config(target: Target, topic: str, **extra) -> dict:
    return {
        "connector.class": SINK_CLASS,
        "topics": topic,
        "connection.url": target.url,
        **target.login,
        "key.converter": JSON,
        "value.converter": JSON,
        **extra,
    }


def produce(bootstrap: str, topic: str, recs: list) -> None:
    """(key, value) pairs, in order, the topic's next offsets."""
    before = high(bootstrap, topic)
    deliveries = ck_produce_ok(bootstrap, topic, [{"key": k, "value": v} for k, v in recs], **{"linger.ms": 200})
    assert [d.offset for d in deliveries] == list(range(before, before + len(recs)))


def wait_rows(broker, names: tuple, read, want, what: str) -> None:
    def probe():
        got = read()
        assert got == want, f"got {got!r}, want {want!r}"
        return True

    try:
        wait_until(probe, timeout=WAIT, interval=0.2, what=what)
    except AssertionError as exc:
        statuses = "\n".join(json.dumps(get(broker, f"/connectors/{n}/status")) for n in names)
        raise AssertionError(f"{exc}\n--- connector statuses ---\n{statuses}") from None


ACCOUNTS = "bank.accounts"
ACCOUNT_KEY = [field("id", "int32", False)]
ACCOUNT_FIELDS = [field("id", "int32", False), field("owner", "string", False), field("balance", "int64")]


def account(id_: int, owner: str, balance: int) -> tuple:
    return (doc("bank.accounts.Key", ACCOUNT_KEY, {"id": id_}),
            doc("bank.accounts.Value", ACCOUNT_FIELDS, {"id": id_, "owner": owner, "balance": balance}))  # fmt: skip


def account_event(op: str, id_: int, owner: str, balance: int) -> tuple:
    """A Debezium change event (`c` or `u`) with its after image."""
    row = {"type": "struct", "name": "bank.accounts.Value", "optional": True, "fields": ACCOUNT_FIELDS}
    fields = [
        {**row, "field": "before"},
        {**row, "field": "after"},
        {"field": "source", "type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source",
         "fields": [field("connector", "string", False), field("name", "string", False)]},
        field("op", "string", False),
        field("ts_ms", "int64"),
    ]  # fmt: skip
    payload = {"before": None, "after": {"id": id_, "owner": owner, "balance": balance},
               "source": {"connector": "postgresql", "name": "bank"}, "op": op, "ts_ms": 1}  # fmt: skip
    return doc("bank.accounts.Key", ACCOUNT_KEY, {"id": id_}), doc("bank.accounts.Envelope", fields, payload)


@pytest.mark.timeout(120)
def test_sql_sink_update_mode_changes_only_existing_rows(target, start_broker, tmp_path):
    target.run(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance BIGINT)",
        "INSERT INTO accounts VALUES (1, 'Ada', 100), (2, 'Bob', 200), (3, 'Cy', 300)",
    )
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, ACCOUNTS)
    create(broker, "upd", sink_config(target, ACCOUNTS, **{
        "insert.mode": "update", "primary.key.mode": "record_key", "collection.name.format": "accounts",
    }))  # fmt: skip
    wait_state(broker, "upd", "RUNNING")
    # Rows and change events for existing and missing rows, a tombstone (delete.enabled is
    # off: ignored), and last an update of row 3 that must be written.
    produce(broker.bootstrap, ACCOUNTS, [
        account(1, "Ada", 150),
        account(4, "Dee", 400),
        account_event("u", 2, "Bobby", 250),
        account_event("c", 5, "Eve", 500),
        (doc("bank.accounts.Key", ACCOUNT_KEY, {"id": 3}), None),
        account(6, "Fay", 600),
        account(3, "Cy", 301),
    ])  # fmt: skip
    want = [(1, "Ada", 150), (2, "Bobby", 250), (3, "Cy", 301)]
    wait_rows(broker, ("upd",), lambda: target.select("SELECT id, owner, balance FROM accounts ORDER BY id"), want,
              "the existing rows updated, no other row")  # fmt: skip
    # A second batch: a missing row stays missing, an existing one is updated again.
    produce(broker.bootstrap, ACCOUNTS, [account(4, "Dee", 401), account_event("u", 1, "Ada L.", 151)])
    want = [(1, "Ada L.", 151), (2, "Bobby", 250), (3, "Cy", 301)]
    wait_rows(broker, ("upd",), lambda: target.select("SELECT id, owner, balance FROM accounts ORDER BY id"), want,
              "the second batch")  # fmt: skip
    wait_state(broker, "upd", "RUNNING")


STOCK = "inv.stock"
STOCK_KEY = [field("id", "int32", False)]
STOCK_FIELDS = [field("region", "string", False), field("sku", "string", False), field("qty", "int64"),
                field("note", "string")]  # fmt: skip


def stock(region: str, sku: str, qty: int, note, key_id) -> tuple:
    """A row of the value; the Kafka key ({"id": key_id}, or none) is not the table's key."""
    key = None if key_id is None else doc("inv.stock.Key", STOCK_KEY, {"id": key_id})
    return key, doc("inv.stock.Value", STOCK_FIELDS, {"region": region, "sku": sku, "qty": qty, "note": note})


@pytest.mark.timeout(120)
def test_sql_sink_primary_key_from_record_value(target, start_broker, tmp_path):
    # `update` needs the table; `upsert` creates its own (schema.evolution=basic).
    target.run(
        "CREATE TABLE upd_inv_stock (region TEXT NOT NULL, sku TEXT NOT NULL, qty BIGINT, note TEXT, "
        "PRIMARY KEY (region, sku))",
        "INSERT INTO upd_inv_stock VALUES ('eu', 'a', 1, 'pre'), ('us', 'a', 2, 'pre')",
    )
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, STOCK)
    common = {"primary.key.mode": "record_value", "primary.key.fields": "region,sku"}
    create(broker, "upserted", sink_config(target, STOCK, **common, **{
        "insert.mode": "upsert", "schema.evolution": "basic", "collection.name.format": "up_${topic}"}))  # fmt: skip
    create(broker, "updated", sink_config(target, STOCK, **common, **{
        "insert.mode": "update", "collection.name.format": "upd_${topic}"}))  # fmt: skip
    names = ("upserted", "updated")
    for n in names:
        wait_state(broker, n, "RUNNING")
    produce(broker.bootstrap, STOCK, [
        stock("eu", "a", 10, "first", 0),
        stock("us", "a", 20, None, None),
        stock("eu", "b", 30, "b", 0),
        stock("eu", "a", 11, "second", None),
        stock("us", "b", 40, None, 0),
        stock("us", "a", 21, "last", 0),
    ])  # fmt: skip
    wait_rows(broker, names, lambda: target.select("SELECT region, sku, qty, note FROM upd_inv_stock ORDER BY 1, 2"),
              [("eu", "a", 11, "second"), ("us", "a", 21, "last")],
              "update: only the (region, sku) rows already there")  # fmt: skip
    wait_rows(broker, names, lambda: target.select("SELECT region, sku, qty, note FROM up_inv_stock ORDER BY 1, 2"),
              [("eu", "a", 11, "second"), ("eu", "b", 30, "b"), ("us", "a", 21, "last"), ("us", "b", 40, None)],
              "upsert: one row per (region, sku), the last one")  # fmt: skip
    assert target.primary_key("up_inv_stock") == ["region", "sku"]
    assert target.columns("up_inv_stock") == ["region", "sku", "qty", "note"]
    assert target.primary_key("upd_inv_stock") == ["region", "sku"]
    for n in names:
        wait_state(broker, n, "RUNNING")
