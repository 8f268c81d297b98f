"""Replication from PostgreSQL into SQLite and PostgreSQL: two connector configs, one weir.

Through the real `weir` binary and its REST API, against the cluster `scripts/test` starts
(WEIR_TEST_PG_URL, wal_level=logical), reusing test_cdc_postgres's databases (a database and a
replication slot of each test's own, dropped at the end):

* The built-in postgres-source (`io.debezium.connector.postgresql.PostgresConnector`) captures
  a table into `shop.public.items`; the built-in sql-sink (Debezium's JDBC sink,
  `io.debezium.connector.jdbc.JdbcSinkConnector`: upsert, primary key from the record key,
  deletes enabled, `schema.evolution=basic`) writes that topic into
  `jdbc:sqlite:<tmp>/replica.db`, table `shop_public_items` (the topic, dots made
  underscores). JsonConverter with schemas on both sides.
* The snapshot, then inserts, updates (a value NULLed, a NULL given a value), deletes, a
  primary key update, multi-row transactions (an insert deleted again in the same
  transaction); `weir` is stopped, more changes are made meanwhile, `weir` starts again and
  still more follow; a column added to the source table is added to the replica; then a
  writer makes random changes (random values and NULLs, key moves, several statements per
  transaction) while `weir` is SIGKILLed and started again. After each phase the SQLite table
  ends equal to the PostgreSQL table, row for row, and deleted rows are gone.
* The same into a second PostgreSQL database of the same server, compared column by column
  as PostgreSQL prints each value (`::text`), with more types (int2, int8, real, uuid,
  timestamptz, time); a TRUNCATE replicates with `truncate.enabled`.
* Doubles replicate bit for bit; when one does not, the test says on which side (PostgreSQL
  to topic, or topic to SQLite) it changed.
* A sink config with `delete.enabled=true` and `primary.key.mode=none` is refused (HTTP
  400, naming delete.enabled), as is a JDBC URL that is neither PostgreSQL nor SQLite.

How the tables are compared (SQLite has no decimal, boolean, date or JSON types; the sink
creates NUMERIC, BOOLEAN, DATE, TIMESTAMP, BLOB, REAL and TEXT columns, which SQLite stores
with its type affinities), one normalized value per column:

    numeric(10,2)     Decimal, compared as text quantized to 2 places (SQLite's NUMERIC
                      affinity stores "123.45" as REAL 123.45 and "1.00" as INTEGER 1; every
                      numeric(10,2) value has at most 10 significant digits, exact in a double)
    bool              0 / 1 (SQLite stores an INTEGER)
    timestamp         ISO text `YYYY-MM-DD HH:MM:SS[.ffffff]`, the SQLite side parsed with
                      datetime.fromisoformat first (it must parse)
    date              ISO text `YYYY-MM-DD` (parsed the same way)
    bytea             bytes (SQLite must hand back a BLOB: an empty bytea is b"", not NULL)
    double precision  the float itself, bit for bit (but -0.0 counts as 0.0: SQLite stores a
                      REAL -0.0 as 0.0, whoever writes it)
    jsonb             the parsed JSON value (key order and spacing do not count; the jsonb is
                      read as text, so that JSON's `null` is not taken for SQL NULL)
    text, int4        as they are; NULL is None everywhere
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import urllib.parse
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from helpers import wait_until  # noqa: E402
from test_cdc_postgres import (  # noqa: E402
    _URL,
    JSON,
    PG_PASSWORD,
    PREFIX,
    PgDb,
    pgdb,  # noqa: F401 - the fixture
    records,
    topic,
)
from test_connect import call, create, error, get, start_connect, wait_state  # noqa: E402

SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
TABLE = "items"
TARGET_TABLE = f"{PREFIX}_public_{TABLE}"  # the topic shop.public.items, dots made underscores
CONVERGE = 60.0  # seconds for the replica to catch up after a phase of changes
FAST_RESTARTS = {"WEIR_CONNECT__RESTART_BACKOFF_INITIAL_MS": "200", "WEIR_CONNECT__RESTART_BACKOFF_MAX_MS": "1000"}
SCHEMAS = {"key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true"}

# ---------------------------------------------------------------------------
# The source table
# ---------------------------------------------------------------------------

COLUMNS = ["id", "name", "note", "price", "active", "created", "day", "raw", "score", "doc"]

ITEMS_DDL = """
CREATE TABLE items (
    id int4 PRIMARY KEY,
    name text NOT NULL,
    note text,
    price numeric(10, 2),
    active bool,
    created timestamp,
    day date,
    raw bytea,
    score double precision,
    doc jsonb
)
"""

# Before the connector starts: the snapshot.
SNAPSHOT_ROWS = r"""
INSERT INTO items VALUES
 (1, 'Ada', 'first note', 123.45, true, '2024-02-29 10:34:56.789012', '2024-02-29', '\x0001ff', 0.1,
  '{"a": 1, "b": [true, null, "x"], "nested": {"k": "v"}}'),
 (2, 'Bob''s "quoted" name', NULL, -1.00, NULL, '1969-12-31 23:59:59.999999', '1969-12-31', NULL, NULL, NULL),
 (3, 'Cy', E'two\nlines\ttab', 0.00, false, '2000-01-01 00:00:00', '0001-01-01', '\x', 1e300, '[]'),
 (4, 'Zoë ✓ 🚀', 'unicode', 99999999.99, true, '2038-01-19 03:14:08.5', '9999-12-31', '\xdeadbeef', -2.5e-300,
  '{"emoji": "🚀", "n": 1.5}'),
 (5, 'Eve', 'max and min', -99999999.99, false, NULL, NULL, '\x00', 5e-324, '"just a string"'),
 (-6, 'negative key', '', 0.01, NULL, '1970-01-01 00:00:00.000001', '1970-01-01', '\x7f', 1.7976931348623157e308,
  'null'),
 (7, 'Gus', 'snapshot only', 42.10, true, '2024-06-01 12:00:00', '2024-06-01', '\x0102', 3.141592653589793,
  '{"deep": [[1, [2, [3]]]]}')
"""


# ---------------------------------------------------------------------------
# Normalized rows (see the module docstring)
# ---------------------------------------------------------------------------

CENT = Decimal("0.01")


def n_decimal(v):
    if v is None:
        return None
    if isinstance(v, float):
        v = repr(v)  # the shortest text that reads back as the same double
    return str(Decimal(str(v)).quantize(CENT))


def n_bool(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    return v  # SQLite: must already be 0 or 1 (anything else shows up in the difference)


def n_timestamp(v):
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return f"unparsable timestamp {v!r}"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    return f"not a timestamp: {v!r}"


def n_date(v):
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = date.fromisoformat(v)
        except ValueError:
            return f"unparsable date {v!r}"
    if isinstance(v, date):
        return v.isoformat()
    return f"not a date: {v!r}"


def n_bytes(v):
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return f"not bytes: {v!r}"


def n_float(v):
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = float(v)
        if v == 0.0:
            v = 0.0  # SQLite stores -0.0 as 0.0 (its REAL storage drops the sign of zero)
        return v.hex()  # bit for bit, and readable in a difference
    return f"not a number: {v!r}"


def n_json(v):
    """JSON text (PostgreSQL's jsonb read as text, so that the JSON `null` is not SQL NULL)."""
    if v is None:
        return None
    if not isinstance(v, str):
        return f"not JSON text: {v!r}"
    try:
        return json.dumps(json.loads(v), sort_keys=True)
    except ValueError:
        return f"not JSON: {v!r}"


def normalize(row: tuple) -> tuple:
    """COLUMNS normalized, then any further (text) columns as they are."""
    id_, name, note, price, active, created, day, raw, score, doc = row[: len(COLUMNS)]
    return (id_, name, note, n_decimal(price), n_bool(active), n_timestamp(created), n_date(day), n_bytes(raw),
            n_float(score), n_json(doc), *row[len(COLUMNS):])  # fmt: skip


def pg_rows(db: PgDb, extra=()) -> dict:
    cols = ", ".join(c + "::text" if c == "doc" else c for c in [*COLUMNS, *extra])
    got = db.conn.execute(f"SELECT {cols} FROM {TABLE} ORDER BY id").fetchall()
    return {r[0]: normalize(r) for r in got}


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """Read only: the test never writes the replica."""
    assert path.exists(), f"{path} does not exist yet"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def sqlite_rows(path: Path, extra=()) -> dict:
    con = sqlite_connect(path)
    try:
        cols = ", ".join(f'"{c}"' for c in [*COLUMNS, *extra])
        got = con.execute(f'SELECT {cols} FROM "{TARGET_TABLE}" ORDER BY "id"').fetchall()
    finally:
        con.close()
    return {r[0]: normalize(r) for r in got}


def difference(want: dict, got: dict, cols=COLUMNS) -> str:
    """'' when equal, else what differs: missing and extra ids, and each differing column."""
    out = []
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing:
        out.append(f"missing ids {missing}")
    if extra:
        out.append(f"ids that should not be there {extra}: {[got[i] for i in extra]}")
    for i in sorted(set(want) & set(got)):
        if want[i] != got[i]:
            cells = [f"{c}: want {w!r}, got {g!r}" for c, w, g in zip(cols, want[i], got[i]) if w != g]
            out.append(f"id {i}: " + "; ".join(cells))
    return "\n".join(out)


def statuses(broker, *names: str) -> str:
    out = []
    for n in names:
        try:
            out.append(json.dumps(get(broker, f"/connectors/{n}/status"), indent=1))
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            out.append(f"{n}: status unavailable: {exc!r}")
    return "\n".join(out)


def wait_identical(broker, names: tuple, want_fn, got_fn, what: str, gone=(), cols=COLUMNS) -> dict:
    """Polls until the replica's rows equal the source's; returns them. On a timeout the
    message carries the last difference and both connectors' statuses."""

    def probe():
        want, got = want_fn(), got_fn()
        diff = difference(want, got, cols)
        assert not diff, diff
        for i in gone:
            assert i not in got, f"deleted id {i} still in the replica"
        return want

    try:
        return wait_until(probe, timeout=CONVERGE, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- connector statuses ---\n{statuses(broker, *names)}") from None


def source_config(db: PgDb, **extra) -> dict:
    return db.config(**{"table.include.list": f"public.{TABLE}", **SCHEMAS, **extra})


def replica_config(url: str, **extra) -> dict:
    return {
        "connector.class": SINK_CLASS,
        "topics": topic(TABLE),
        "connection.url": url,
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "basic",
        "key.converter": JSON,
        "value.converter": JSON,
        **SCHEMAS,
        **extra,
    }


# ---------------------------------------------------------------------------
# The changes (the same in both tests)
# ---------------------------------------------------------------------------


def changes_while_running(db: PgDb) -> set:
    """Returns the ids these changes delete for good."""
    db.run(
        "INSERT INTO items VALUES (10, 'new', 'inserted', 10.10, true, '2025-01-02 03:04:05.06', '2025-01-02', "
        """'\\xcafe', 2.0, '{"new": true}')""",
        "INSERT INTO items (id, name) VALUES (11, 'mostly null')",
        # NULLing values, and giving NULLs a value.
        "UPDATE items SET note = NULL, price = NULL, doc = NULL, raw = NULL WHERE id = 1",
        "UPDATE items SET note = 'now noted', active = true, raw = '\\x00ff00', score = 0.5, "
        "doc = '{\"was\": null}' WHERE id = 2",
        "UPDATE items SET price = price + 0.01, created = created + interval '1 day', day = day + 1 WHERE id = 10",
        "DELETE FROM items WHERE id = 3",
        # A primary key update: a delete of 4, its tombstone, a create of 40.
        "UPDATE items SET id = 40, note = 'moved from 4' WHERE id = 4",
    )
    # Several rows in one transaction, one of them inserted and deleted again.
    db.tx(
        "INSERT INTO items (id, name, price) VALUES (12, 'tx one', 1.50), (13, 'tx two', 2.50), (14, 'gone again', 3)",
        "UPDATE items SET name = 'tx one, renamed', active = false WHERE id = 12",
        "UPDATE items SET name = 'tx one, renamed twice' WHERE id = 12",
        "DELETE FROM items WHERE id = 14",
        "DELETE FROM items WHERE id = 5",
        "UPDATE items SET id = 15 WHERE id = 13",
        "UPDATE items SET score = -0.0, active = NULL WHERE id = 7",
    )
    return {3, 4, 5, 13, 14}


def changes_while_stopped(db: PgDb) -> set:
    db.run(
        "INSERT INTO items VALUES (20, 'while stopped', NULL, 0.99, false, NULL, '2026-12-01', '\\x', NULL, '{}')",
        "UPDATE items SET note = 'back again', price = 7.77, doc = '[1, 2, 3]' WHERE id = 1",
        "DELETE FROM items WHERE id = 2",
        "UPDATE items SET id = 41 WHERE id = 40",
    )
    db.tx(
        "INSERT INTO items (id, name, note) SELECT g, 'batch ' || g, repeat('x', g) FROM generate_series(100, 149) g",
        "UPDATE items SET price = id / 7.0 WHERE id BETWEEN 100 AND 149",
        "DELETE FROM items WHERE id BETWEEN 140 AND 149",
    )
    return {2, 40} | set(range(140, 150))


def changes_after_restart(db: PgDb) -> set:
    db.run(
        "UPDATE items SET note = NULL WHERE id = 20",
        "DELETE FROM items WHERE id BETWEEN 100 AND 109",
        "INSERT INTO items (id, name, score) VALUES (21, 'after restart', 6.02214076e23)",
    )
    db.tx(
        "UPDATE items SET id = id + 1000 WHERE id BETWEEN 110 AND 114",
        "UPDATE items SET active = NOT coalesce(active, false) WHERE id > 0",
    )
    return set(range(100, 115))


def add_tag_column(db: PgDb) -> None:
    db.run(
        "ALTER TABLE items ADD COLUMN tag text",
        "UPDATE items SET tag = 'tag ' || id WHERE id % 2 = 0",
        "INSERT INTO items (id, name, tag) VALUES (22, 'tagged', 'first tag')",
    )


class Churn(threading.Thread):
    """Random changes to rows FIRST.. (inserts, updates to random values and NULLs, deletes,
    primary key moves), one to three statements per transaction, on a connection of its own."""

    FIRST, SPAN = 5000, 60

    def __init__(self, url: str, ops: int, rate: float, seed: int):
        super().__init__(daemon=True)
        self.url, self.ops, self.pause = url, ops, 1.0 / rate
        self.rng = random.Random(seed)
        self.done = 0
        self.error: Exception | None = None
        self.stop = threading.Event()

    def value(self, col: str):
        r = self.rng
        if col != "name" and r.random() < 0.2:
            return None
        if col in ("name", "note", "tag"):
            text = "".join(r.choice("abcxyz é'\"✓\n") for _ in range(r.randint(0, 30)))
            return text or ("n" if col == "name" else "")
        if col == "price":
            return Decimal(r.randint(-9_999_999_999, 9_999_999_999)).scaleb(-2)
        if col == "active":
            return r.random() < 0.5
        if col == "created":
            return datetime(1900, 1, 1) + timedelta(microseconds=r.randint(0, 200 * 365 * 86_400 * 10**6))
        if col == "day":
            return date(1, 1, 1) + timedelta(days=r.randint(0, 3_652_058))
        if col == "raw":
            return r.randbytes(r.randint(0, 40))
        if col == "score":
            return r.choice([r.uniform(-1, 1) * 10.0 ** r.randint(-300, 300), r.random(), float(r.randint(-9, 9))])
        if col == "doc":
            return Jsonb(r.choice([{"k": r.random(), "l": [1, None, "x"]}, [r.randint(0, 9)] * 3, "s", 1.25, True]))
        raise AssertionError(col)

    def statement(self, cur) -> None:
        r = self.rng
        cols = [c for c in [*COLUMNS, "tag"] if c != "id"]
        i = self.FIRST + r.randrange(self.SPAN)
        op = r.random()
        if op < 0.35:
            vals = [self.value(c) for c in cols]
            marks = ", ".join(["%s"] * (len(cols) + 1))
            cur.execute(f"INSERT INTO items (id, {', '.join(cols)}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING",
                        [i, *vals])  # fmt: skip
        elif op < 0.75:
            some = r.sample(cols, r.randint(1, 4))
            sets = ", ".join(f"{c} = %s" for c in some)
            cur.execute(f"UPDATE items SET {sets} WHERE id = %s", [*(self.value(c) for c in some), i])
        elif op < 0.9:
            cur.execute("DELETE FROM items WHERE id = %s", [i])
        else:
            j = self.FIRST + r.randrange(self.SPAN)
            cur.execute("UPDATE items SET id = %s WHERE id = %s AND NOT EXISTS (SELECT 1 FROM items WHERE id = %s)",
                        [j, i, j])  # fmt: skip

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                while self.done < self.ops and not self.stop.is_set():
                    with conn.transaction(), conn.cursor() as cur:
                        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                            self.statement(cur)
                    self.done += 1
                    time.sleep(self.pause)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


# ---------------------------------------------------------------------------
# 1. PostgreSQL -> SQLite
# ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_postgres_to_sqlite_replication_ends_identical(pgdb, start_broker, tmp_path):  # noqa: F811
    pgdb.run(ITEMS_DDL, SNAPSHOT_ROWS)
    replica = tmp_path / "replica.db"
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    names = ("items-cdc", "items-replica")
    create(broker, names[0], source_config(pgdb))
    create(broker, names[1], replica_config(f"jdbc:sqlite:{replica}"))
    for n in names:
        wait_state(broker, n, "RUNNING")

    def same(what: str, gone=()) -> dict:
        return wait_identical(broker, names, lambda: pg_rows(pgdb), lambda: sqlite_rows(replica), what, gone)

    # The snapshot.
    rows = same("the snapshot in SQLite")
    assert len(rows) == 7, rows

    # The table the sink made: the topic's name, the source's columns, the key as primary key.
    con = sqlite3.connect(f"file:{replica}?mode=ro", uri=True, timeout=5)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        info = con.execute(f'PRAGMA table_info("{TARGET_TABLE}")').fetchall()
    finally:
        con.close()
    assert tables == [TARGET_TABLE], tables
    assert [r[1] for r in info] == COLUMNS, info
    assert [r[1] for r in info if r[5]] == ["id"], f"the primary key is the record key: {info}"
    assert [r[1] for r in info if r[3]] == ["id", "name"], f"NOT NULL as in the source: {info}"

    # Changes while both run.
    gone = changes_while_running(pgdb)
    rows = same("the changes while running in SQLite", gone)
    assert {1, 2, 10, 11, 12, 15, 40} <= set(rows), sorted(rows)

    # Stopped: changes wait in the slot; then everything arrives.
    assert broker.stop() == 0
    gone |= changes_while_stopped(pgdb)
    broker.start()
    for n in names:
        wait_state(broker, n, "RUNNING")
    rows = same("the changes made while weir was stopped in SQLite", gone)
    assert {20, 41} <= set(rows) and set(range(100, 140)) <= set(rows), sorted(rows)

    # And after the restart.
    gone |= changes_after_restart(pgdb)
    rows = same("the changes after the restart in SQLite", gone)
    assert {1110, 1114, 21} <= set(rows), sorted(rows)

    # A column added to the source is added to the replica (schema.evolution=basic).
    add_tag_column(pgdb)
    wait_identical(broker, names, lambda: pg_rows(pgdb, ["tag"]), lambda: sqlite_rows(replica, ["tag"]),
                   "the new column in SQLite", gone, cols=[*COLUMNS, "tag"])  # fmt: skip
    con = sqlite_connect(replica)
    try:
        info = con.execute(f'PRAGMA table_info("{TARGET_TABLE}")').fetchall()
    finally:
        con.close()
    assert [r[1] for r in info] == [*COLUMNS, "tag"], info

    # SIGKILL while a writer keeps changing rows (single rows, several in a transaction, key
    # moves): whatever is replayed after the restart is written again over the same keys.
    churn = Churn(pgdb.url, ops=400, rate=100, seed=7)
    churn.start()
    try:
        wait_until(lambda: churn.done >= 100, timeout=30, interval=0.05, what="100 writer transactions")
        broker.kill9()
        time.sleep(0.5)
        broker.start()
        churn.join(timeout=60)
        assert not churn.is_alive(), f"the writer did not finish ({churn.done} transactions)"
    finally:
        churn.stop.set()
        churn.join(timeout=10)
    assert churn.error is None, f"the writer failed after {churn.done} transactions: {churn.error!r}"
    for n in names:
        wait_state(broker, n, "RUNNING")
    rows = wait_identical(broker, names, lambda: pg_rows(pgdb, ["tag"]), lambda: sqlite_rows(replica, ["tag"]),
                          "the writer's changes across a SIGKILL in SQLite", gone, cols=[*COLUMNS, "tag"])  # fmt: skip
    assert any(i >= Churn.FIRST for i in rows), "the writer's rows are there"
    print(f"{len(rows)} rows replicated; the writer ran {churn.done} transactions")
    for n in names:
        wait_state(broker, n, "RUNNING")


# ---------------------------------------------------------------------------
# 2. PostgreSQL -> PostgreSQL
# ---------------------------------------------------------------------------

# More types than SQLite can tell apart; all of them survive Debezium's encoding exactly.
PG_DDL = """
CREATE TABLE items (
    id int4 PRIMARY KEY,
    name varchar(40) NOT NULL,
    note text,
    price numeric(10, 2),
    active bool,
    created timestamp,
    day date,
    raw bytea,
    score double precision,
    doc jsonb,
    small int2,
    big int8,
    f4 real,
    uid uuid,
    at timestamptz,
    clock time
)
"""
PG_EXTRA = ["small", "big", "f4", "uid", "at", "clock"]
PG_COLUMNS = COLUMNS + PG_EXTRA
# The column types the sink creates (information_schema.columns.data_type).
PG_TARGET_TYPES = {
    "id": "integer", "name": "text", "note": "text", "price": "numeric", "active": "boolean",
    "created": "timestamp without time zone", "day": "date", "raw": "bytea", "score": "double precision",
    "doc": "jsonb", "small": "smallint", "big": "bigint", "f4": "real", "uid": "uuid",
    "at": "timestamp with time zone", "clock": "time without time zone",
}  # fmt: skip


@pytest.fixture
def target_db():
    """The replica's database (on the same server); request it before `start_broker`."""
    db = PgDb()
    yield db
    db.drop()


def pg_text_rows(db: PgDb, table: str, extra=()) -> dict:
    """id -> each column's text form: exact, since every value is compared as PostgreSQL prints
    it (the same session settings on both sides)."""
    cols = ", ".join(f'"{c}"::text' for c in [*PG_COLUMNS, *extra])
    got = db.conn.execute(f'SELECT {cols} FROM "{table}" ORDER BY id').fetchall()
    return {int(r[0]): r for r in got}


@pytest.mark.timeout(240)
def test_postgres_to_postgres_replication_ends_identical(pgdb, target_db, start_broker, tmp_path):  # noqa: F811
    pgdb.run(PG_DDL, SNAPSHOT_ROWS)
    pgdb.run(
        "UPDATE items SET small = id * 100, big = id * 1000000000000, f4 = id / 4.0, "
        "uid = md5(id::text)::uuid, at = created AT TIME ZONE 'Europe/Paris', clock = created::time "
        "WHERE id <> 5"
    )
    pgdb.run(
        "UPDATE items SET small = -32768, big = -9223372036854775808, f4 = 3.4e38, "
        "uid = '00000000-0000-0000-0000-000000000000', at = '2024-02-29 12:34:56.789+02', clock = '23:59:59.999999' "
        "WHERE id = 5"
    )
    for db in (pgdb, target_db):
        db.conn.execute("SET TIME ZONE 'UTC'")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    names = ("items-cdc", "items-pg-replica")
    user = urllib.parse.unquote(_URL.username or "")
    url = f"jdbc:postgresql://{_URL.hostname}:{_URL.port or 5432}/{target_db.name}"
    # Truncates are emitted only when asked for (Debezium skips them by default).
    create(broker, names[0], source_config(pgdb, **{"skipped.operations": "none"}))
    create(broker, names[1], replica_config(url, **{"connection.username": user, "connection.password": PG_PASSWORD,
                                                    "truncate.enabled": "true"}))  # fmt: skip
    for n in names:
        wait_state(broker, n, "RUNNING")

    extra = []  # columns added on the way

    def same(what: str, gone=()) -> dict:
        return wait_identical(
            broker, names, lambda: pg_text_rows(pgdb, TABLE, extra), target_rows, what, gone,
            cols=[*PG_COLUMNS, *extra],
        )

    def target_rows() -> dict:
        ok = target_db.one("SELECT to_regclass(%s) IS NOT NULL", f'"{TARGET_TABLE}"')[0]
        assert ok, f"no table {TARGET_TABLE} in {target_db.name} yet"
        return pg_text_rows(target_db, TARGET_TABLE, extra)

    rows = same("the snapshot in the PostgreSQL replica")
    assert len(rows) == 7, rows
    types = dict(
        target_db.conn.execute(
            "SELECT column_name::text, data_type::text FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (TARGET_TABLE,),
        ).fetchall()
    )
    assert types == PG_TARGET_TYPES, types
    pk = target_db.conn.execute(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (f'"{TARGET_TABLE}"',),
    ).fetchall()
    assert pk == [("id",)], pk

    gone = changes_while_running(pgdb)
    same("the changes while running in the PostgreSQL replica", gone)
    gone |= changes_while_stopped(pgdb)  # weir keeps running here: the same changes, streamed
    same("more changes in the PostgreSQL replica", gone)
    gone |= changes_after_restart(pgdb)
    rows = same("still more changes in the PostgreSQL replica", gone)
    assert {1110, 1114, 21, 41} <= set(rows), sorted(rows)

    # A TRUNCATE empties the replica (truncate.enabled); rows written after it arrive.
    pgdb.tx("TRUNCATE items", "INSERT INTO items (id, name) VALUES (500, 'after truncate')")
    rows = same("the truncate in the PostgreSQL replica", gone=(1, 41, 21))
    assert list(rows) == [500], rows

    # A new column (schema.evolution=basic), then random changes.
    add_tag_column(pgdb)
    extra.append("tag")
    same("the new column in the PostgreSQL replica")
    tag_type = target_db.one(
        "SELECT data_type::text FROM information_schema.columns WHERE table_name = %s AND column_name = 'tag'",
        TARGET_TABLE,
    )
    assert tag_type == ("text",), tag_type
    churn = Churn(pgdb.url, ops=300, rate=300, seed=11)
    churn.run()
    assert churn.error is None, f"the writer failed after {churn.done} transactions: {churn.error!r}"
    rows = same("the writer's changes in the PostgreSQL replica")
    assert any(i >= Churn.FIRST for i in rows), "the writer's rows are there"

    # The password is not shown back.
    config = get(broker, f"/connectors/{names[1]}/config")
    assert not PG_PASSWORD or PG_PASSWORD not in json.dumps(config), config
    for n in names:
        wait_state(broker, n, "RUNNING")


@pytest.mark.timeout(120)
def test_postgres_replica_takes_values_after_nulls(pgdb, target_db, start_broker, tmp_path):  # noqa: F811
    """Row 1 is all NULLs and written first, each later row has a value in every column: the
    replica ends equal, and the sink keeps running."""
    pgdb.run(PG_DDL, "INSERT INTO items (id, name) VALUES (1, 'all null')")
    for db in (pgdb, target_db):
        db.conn.execute("SET TIME ZONE 'UTC'")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    names = ("nulls-cdc", "nulls-pg-replica")
    user = urllib.parse.unquote(_URL.username or "")
    url = f"jdbc:postgresql://{_URL.hostname}:{_URL.port or 5432}/{target_db.name}"
    create(broker, names[0], source_config(pgdb))
    create(broker, names[1], replica_config(url, **{"connection.username": user, "connection.password": PG_PASSWORD}))

    def target_rows() -> dict:
        ok = target_db.one("SELECT to_regclass(%s) IS NOT NULL", f'"{TARGET_TABLE}"')[0]
        assert ok, f"no table {TARGET_TABLE} in {target_db.name} yet"
        return pg_text_rows(target_db, TARGET_TABLE)

    def same(what: str) -> dict:
        return wait_identical(broker, names, lambda: pg_text_rows(pgdb, TABLE), target_rows, what, cols=PG_COLUMNS)

    same("the all-NULL row in the PostgreSQL replica")
    # Each its own transaction (and so, most likely, its own batch), then all in one.
    pgdb.run(
        "INSERT INTO items VALUES (2, 'all set', 'n', 1.50, true, '2024-01-01 10:00:00', '2024-01-01', '\\x01', 0.5, "
        "'{\"a\": 1}', 2, 3, 0.25, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-01 10:00:00+00', '10:00:00')",
        "UPDATE items SET note = 'n', price = 2.50, active = false, created = '2025-05-05 05:05:05.5', "
        "day = '2025-05-05', raw = '\\x02', score = 1.5, doc = '[1]', small = 4, big = 5, f4 = 0.5, uid = gen_random_uuid(), "
        "at = now(), clock = '05:05:05' WHERE id = 1",
    )
    copy = ", ".join(PG_COLUMNS[1:])
    pgdb.tx(*(f"INSERT INTO items SELECT {i}, {copy} FROM items WHERE id = 2" for i in range(3, 6)))
    rows = same("values after NULLs in the PostgreSQL replica")
    assert sorted(rows) == [1, 2, 3, 4, 5], rows
    for n in names:
        wait_state(broker, n, "RUNNING")


# ---------------------------------------------------------------------------
# 3. Doubles, bit for bit
# ---------------------------------------------------------------------------

# Doubles the random writer above came across that did not survive (each is printed by
# PostgreSQL, and by Python's repr, as the shortest text that reads back as the same double).
TRICKY_DOUBLES = ["0.21057741026659538", "-1.3717372502771962e-80", "0.9153739433374307", "-8.289504343115941e+183",
                  "0.19987693569764142"]  # fmt: skip


@pytest.mark.timeout(120)
def test_doubles_replicate_bit_for_bit(pgdb, start_broker, tmp_path):  # noqa: F811
    """Where a double changes, if it does: between PostgreSQL and the topic (the source side)
    or between the topic and SQLite (the sink side). JSON numbers are read with Python's
    correctly rounded parser."""
    rng = random.Random(3)
    values = [float(v) for v in TRICKY_DOUBLES]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300) for _ in range(200)]
    values += [rng.random() for _ in range(100)]
    pgdb.run("CREATE TABLE items (id int4 PRIMARY KEY, score double precision)")
    with pgdb.conn.cursor() as cur:
        cur.executemany("INSERT INTO items VALUES (%s, %s)", list(enumerate(values)))
    replica = tmp_path / "replica.db"
    broker = start_connect(start_broker, tmp_path)
    names = ("doubles-cdc", "doubles-replica")
    create(broker, names[0], source_config(pgdb))
    create(broker, names[1], replica_config(f"jdbc:sqlite:{replica}"))
    pg = dict(pgdb.conn.execute("SELECT id, score FROM items").fetchall())
    assert pg == dict(enumerate(values)), "PostgreSQL keeps every double"
    topic_values = {k["payload"]["id"]: v["payload"]["after"]["score"]
                    for k, v in records(broker.bootstrap, topic(TABLE), len(values))}  # fmt: skip

    def replicated():
        con = sqlite_connect(replica)
        try:
            got = dict(con.execute(f'SELECT id, score FROM "{TARGET_TABLE}"').fetchall())
        finally:
            con.close()
        assert len(got) == len(values), f"{len(got)} of {len(values)} rows in SQLite"
        return got

    sqlite = wait_until(replicated, timeout=CONVERGE, interval=0.5, what="every row in SQLite")

    def show(v) -> str:
        return f"{v!r} ({float(v).hex()})"

    source_side = [f"id {i}: PostgreSQL {show(pg[i])}, topic {show(topic_values[i])}"
                   for i in sorted(pg) if topic_values[i] != pg[i]]  # fmt: skip
    sink_side = [f"id {i}: topic {show(topic_values[i])}, SQLite {show(sqlite[i])}"
                 for i in sorted(pg) if sqlite[i] != topic_values[i]]  # fmt: skip
    assert not source_side and not sink_side, (
        f"{len(source_side)} of {len(values)} doubles changed between PostgreSQL and the topic, e.g.\n  "
        + "\n  ".join(source_side[:5])
        + f"\n{len(sink_side)} changed between the topic and SQLite, e.g.\n  "
        + "\n  ".join(sink_side[:5])
    )


# ---------------------------------------------------------------------------
# 4. Configs the sink refuses
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sink_refuses_deletes_without_a_record_key(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    url = f"jdbc:sqlite:{tmp_path / 'refused.db'}"
    bad = replica_config(url, **{"primary.key.mode": "none", "insert.mode": "insert"})
    message = error(broker, "POST", "/connectors", {"name": "no-key", "config": bad}, status=400,
                    mentions=("delete.enabled",))  # fmt: skip
    assert "record_key" in message, message

    # The validate endpoint says the same, on that key.
    _, payload = call(broker, "PUT", f"/connector-plugins/{SINK_CLASS}/config/validate", bad, status=200)
    found = {c["value"]["name"]: c["value"]["errors"] for c in payload["configs"] if c["value"]["errors"]}
    assert list(found) == ["delete.enabled"] and "record_key" in found["delete.enabled"][0], found
    assert payload["error_count"] == 1, payload
    _, payload = call(broker, "PUT", f"/connector-plugins/{SINK_CLASS}/config/validate", replica_config(url),
                      status=200)  # fmt: skip
    assert payload["error_count"] == 0, payload

    # A JDBC URL of another database.
    error(broker, "POST", "/connectors",
          {"name": "mysql", "config": replica_config("jdbc:mysql://127.0.0.1:3306/shop")}, status=400,
          mentions=("connection.url",))  # fmt: skip

    assert get(broker, "/connectors") == []
    assert not (tmp_path / "refused.db").exists(), "nothing was opened"
