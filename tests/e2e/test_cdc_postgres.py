"""Change data capture from PostgreSQL through the real `weir` binary and its REST API.

The built-in postgres-source (`io.debezium.connector.postgresql.PostgresConnector`) runs a
Debezium configuration unchanged against the cluster `scripts/test` starts (WEIR_TEST_PG_URL,
wal_level=logical): each test has a database of its own (and its own replication slot, since
slots are cluster-wide), dropped at the end.

* The snapshot arrives as `r` events (the very last one says `last`), then inserts, updates,
  deletes (each followed by a tombstone), primary key updates (a delete, its tombstone and a
  create), REPLICA IDENTITY FULL before images, the unchanged-TOAST placeholder and truncates,
  in commit order, in Debezium's envelope as JsonConverter writes it with schemas: every field,
  its Connect schema and value, the transaction id and LSN checked against the server's own.
  A streamed row is the same as the snapshot's row with the same values.
* A clean restart resumes from the stored offsets: no second snapshot, nothing lost, nothing
  repeated, and the slot's confirmed position moves once records are stored.
* A SIGKILL of `weir` and a restart of PostgreSQL while a writer inserts rows lose nothing.
* Errors (a wrong password, no captured table, a slot in use) are clear in the status, and
  the password is never shown (status, config, tasks, log).
* The config validate endpoint reports Debezium keys Weir does not accept.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

PG_URL = os.environ.get("WEIR_TEST_PG_URL")
if not PG_URL:
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

import psycopg  # noqa: E402 - only needed (and only installed for sure) when PostgreSQL is there
from psycopg import sql  # noqa: E402

from helpers import ck_consume_partition, ck_watermarks, list_topic_names, wait_until  # noqa: E402
from test_connect import call, create, get, start_connect, wait_state  # noqa: E402

CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON = "org.apache.kafka.connect.json.JsonConverter"
PREFIX = "shop"
UNAVAILABLE = "__debezium_unavailable_value"
# Task restarts with a short backoff (a failed open, a lost server connection).
FAST_RESTARTS = {"WEIR_CONNECT__RESTART_BACKOFF_INITIAL_MS": "200", "WEIR_CONNECT__RESTART_BACKOFF_MAX_MS": "1000"}
WAIT = 30.0

_URL = urllib.parse.urlsplit(PG_URL)
PG_PASSWORD = urllib.parse.unquote(_URL.password or "")


# ---------------------------------------------------------------------------
# The PostgreSQL side
# ---------------------------------------------------------------------------


def db_url(dbname: str) -> str:
    return urllib.parse.urlunsplit(_URL._replace(path="/" + urllib.parse.quote(dbname)))


def admin() -> psycopg.Connection:
    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)


def lsn_now(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8").fetchone()[0]


class Tx:
    """What the server says about one committed transaction."""

    def __init__(self, xid: int, lsn_before: int, lsn_after: int, ms_before: int, ms_after: int):
        self.xid, self.lsn_before, self.lsn_after = xid, lsn_before, lsn_after
        self.ms_before, self.ms_after = ms_before, ms_after

    def __repr__(self) -> str:
        return f"Tx(xid={self.xid}, lsn in [{self.lsn_before}, {self.lsn_after}))"


class PgDb:
    """A fresh database of the test cluster, with a slot name of its own."""

    def __init__(self):
        tag = secrets.token_hex(4)
        self.name = f"cdc_{tag}"
        self.slot = f"weir_{tag}"
        with admin() as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = db_url(self.name)
        self._conn = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._conn

    def run(self, *statements: str) -> None:
        """Each statement its own transaction."""
        for s in statements:
            self.conn.execute(s)

    def tx(self, *statements: str) -> Tx:
        """The statements in one transaction; its xid and the WAL positions around it."""
        c = self.conn
        before, ms_before = lsn_now(c), int(time.time() * 1000)
        with c.transaction():
            for s in statements:
                c.execute(s)
            xid = c.execute("SELECT txid_current()").fetchone()[0]
        after, ms_after = lsn_now(c), int(time.time() * 1000)
        return Tx(xid % (1 << 32), before, after, ms_before, ms_after)

    def one(self, query: str, *params):
        return self.conn.execute(query, params).fetchone()

    def config(self, **extra) -> dict:
        """Debezium's keys, as a Debezium deployment would have them."""
        config = {
            "connector.class": CLASS,
            "database.hostname": _URL.hostname,
            "database.port": str(_URL.port or 5432),
            "database.user": urllib.parse.unquote(_URL.username or ""),
            "database.password": PG_PASSWORD,
            "database.dbname": self.name,
            "topic.prefix": PREFIX,
            "plugin.name": "pgoutput",
            "slot.name": self.slot,
            "key.converter": JSON,
            "value.converter": JSON,
        }
        config.update(extra)
        return config

    def drop(self) -> None:
        """Slots first (a database with a logical slot cannot be dropped), then the database."""
        if self._conn is not None:
            self._conn.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                with admin() as c:
                    for slot, pid in c.execute(
                        "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (self.name,)
                    ).fetchall():
                        if pid:
                            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
                            time.sleep(0.2)
                        c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


@pytest.fixture
def pgdb():
    """Request it before `start_broker`: then the broker stops first, which frees the slot."""
    db = PgDb()
    yield db
    db.drop()


def pg_ctl_restart() -> None:
    """Restarts the test cluster (fast shutdown) with the options scripts/test started it with."""
    bindir, data, port = (os.environ.get(k) for k in ("WEIR_TEST_PG_BIN", "WEIR_TEST_PG_DATA", "WEIR_TEST_PG_PORT"))
    if not (bindir and data and port):
        pytest.skip("WEIR_TEST_PG_BIN, WEIR_TEST_PG_DATA and WEIR_TEST_PG_PORT are needed to restart the server")
    sockets = str(Path(data).parent)
    opts = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} -c wal_level=logical "
        "-c max_replication_slots=32 -c max_wal_senders=32 -c fsync=off"
    )
    cmd = [f"{bindir}/pg_ctl", "-D", data, "-l", f"{sockets}/server.log", "-m", "fast", "-w", "-t", "60", "restart", "-o", opts]
    if os.geteuid() == 0:
        # initdb refused root: the cluster belongs to the postgres user (see scripts/test).
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    r = subprocess.run(cmd, cwd="/tmp", capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"pg_ctl restart failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"


# ---------------------------------------------------------------------------
# Debezium's values, computed independently
# ---------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1)


def unscaled_b64(text: str, scale: int) -> str:
    """Connect's Decimal: the unscaled value as Java's BigInteger.toByteArray, in base64."""
    unscaled = int(Decimal(text).scaleb(scale))
    bits = unscaled.bit_length() if unscaled >= 0 else (~unscaled).bit_length()
    return base64.b64encode(unscaled.to_bytes(bits // 8 + 1, "big", signed=True)).decode()


def variable_decimal(text: str) -> dict:
    scale = -Decimal(text).as_tuple().exponent
    return {"scale": scale, "value": unscaled_b64(text, scale)}


def days(d: date) -> int:
    return (d - EPOCH.date()).days


def micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def duration_us(months: int = 0, days_: int = 0, seconds: float = 0.0) -> int:
    """Debezium's MicroDuration: a month is 30.4375 days."""
    return round(months * 30.4375 * 86_400e6 + days_ * 86_400e6 + seconds * 1e6)


# ---------------------------------------------------------------------------
# The tables of the envelope test
# ---------------------------------------------------------------------------

ITEMS_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
    id int4 PRIMARY KEY,
    small int2 NOT NULL,
    big int8,
    f4 float4,
    f8 float8,
    flag bool,
    name varchar(40) NOT NULL,
    note text,
    price numeric(10, 2),
    amount numeric,
    doc jsonb,
    uid uuid,
    raw bytea,
    day date,
    at_time time,
    ts timestamp,
    ts3 timestamp(3),
    tstz timestamptz,
    span interval,
    feeling mood,
    nums int4[]
);
CREATE TABLE ledger (id int4 PRIMARY KEY, account text NOT NULL, amount numeric(12, 3), memo text);
ALTER TABLE ledger REPLICA IDENTITY FULL;
CREATE TABLE items_archive (id int4 PRIMARY KEY, what text);
"""

ITEMS_ROWS = r"""
INSERT INTO items VALUES
 (1, 7, 9007199254740993, 1.5, 0.1, true, 'Ada', 'first note', 123.45, -12.50, '{"a": 1, "b": [true, null]}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x0001ff', '2024-02-29', '10:34:56.5', '2024-02-29 10:34:56.789012',
  '2024-02-29 10:34:56.789', '2024-02-29 12:34:56.789+02', '1 mon 2 days 03:04:05.5', 'happy', '{1,NULL,3}'),
 (2, -32768, NULL, NULL, NULL, false, 'Bob''s', NULL, -1.00, NULL, NULL, NULL, NULL, '1969-12-31', NULL,
  '1969-12-31 23:59:59.999999', NULL, NULL, '-00:00:01.5', 'sad', '{}'),
 (3, 32767, -9223372036854775808, -0.25, 1e300, NULL, 'Cy', 'third', 0.00, 0, '[]',
  '00000000-0000-0000-0000-000000000000', '\x', '0001-01-01', '23:59:59.999999', NULL,
  '1970-01-01 00:00:00.001', '2024-01-01 00:00:00+00', '0', 'ok', '{-2147483648,2147483647}');
INSERT INTO ledger VALUES (1, 'cash', 10.500, 'opening'), (2, 'bank', -3.250, NULL);
INSERT INTO items_archive VALUES (1, 'not captured');
"""

ROW1 = {
    "id": 1,
    "small": 7,
    "big": 9007199254740993,
    "f4": 1.5,
    "f8": 0.1,
    "flag": True,
    "name": "Ada",
    "note": "first note",
    "price": unscaled_b64("123.45", 2),
    "amount": variable_decimal("-12.50"),
    "doc": '{"a": 1, "b": [true, null]}',
    "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "raw": "AAH/",
    "day": days(date(2024, 2, 29)),
    "at_time": (10 * 3600 + 34 * 60 + 56) * 1_000_000 + 500_000,
    "ts": micros(datetime(2024, 2, 29, 10, 34, 56, 789012)),
    "ts3": micros(datetime(2024, 2, 29, 10, 34, 56, 789000)) // 1000,
    "tstz": "2024-02-29T10:34:56.789Z",
    "span": duration_us(months=1, days_=2, seconds=3 * 3600 + 4 * 60 + 5.5),
    "feeling": "happy",
    "nums": [1, None, 3],
}
ROW2 = {
    "id": 2,
    "small": -32768,
    "big": None,
    "f4": None,
    "f8": None,
    "flag": False,
    "name": "Bob's",
    "note": None,
    "price": unscaled_b64("-1.00", 2),
    "amount": None,
    "doc": None,
    "uid": None,
    "raw": None,
    "day": -1,
    "at_time": None,
    "ts": -1,
    "ts3": None,
    "tstz": None,
    "span": -1_500_000,
    "feeling": "sad",
    "nums": [],
}
ROW3 = {
    "id": 3,
    "small": 32767,
    "big": -9223372036854775808,
    "f4": -0.25,
    "f8": 1e300,
    "flag": None,
    "name": "Cy",
    "note": "third",
    "price": "AA==",
    "amount": {"scale": 0, "value": "AA=="},
    "doc": "[]",
    "uid": "00000000-0000-0000-0000-000000000000",
    "raw": "",
    "day": days(date(1, 1, 1)),
    "at_time": 86_400_000_000 - 1,
    "ts": None,
    "ts3": 1,
    "tstz": "2024-01-01T00:00:00Z",
    "span": 0,
    "feeling": "ok",
    "nums": [-2147483648, 2147483647],
}
NO_ITEM = {k: None for k in ROW1}

# The Connect schema of each column: (field, type, optional, name, parameters, extra).
ITEMS_FIELDS = [
    {"field": "id", "type": "int32", "optional": False},
    {"field": "small", "type": "int16", "optional": False},
    {"field": "big", "type": "int64", "optional": True},
    {"field": "f4", "type": "float", "optional": True},
    {"field": "f8", "type": "double", "optional": True},
    {"field": "flag", "type": "boolean", "optional": True},
    {"field": "name", "type": "string", "optional": False},
    {"field": "note", "type": "string", "optional": True},
    {"field": "price", "type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
     "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
    {"field": "amount", "type": "struct", "optional": True, "name": "io.debezium.data.VariableScaleDecimal",
     "fields": [{"field": "scale", "type": "int32", "optional": False},
                {"field": "value", "type": "bytes", "optional": False}]},
    {"field": "doc", "type": "string", "optional": True, "name": "io.debezium.data.Json"},
    {"field": "uid", "type": "string", "optional": True, "name": "io.debezium.data.Uuid"},
    {"field": "raw", "type": "bytes", "optional": True},
    {"field": "day", "type": "int32", "optional": True, "name": "io.debezium.time.Date"},
    {"field": "at_time", "type": "int64", "optional": True, "name": "io.debezium.time.MicroTime"},
    {"field": "ts", "type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp"},
    {"field": "ts3", "type": "int64", "optional": True, "name": "io.debezium.time.Timestamp"},
    {"field": "tstz", "type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp"},
    {"field": "span", "type": "int64", "optional": True, "name": "io.debezium.time.MicroDuration"},
    {"field": "feeling", "type": "string", "optional": True, "name": "io.debezium.data.Enum",
     "parameters": {"allowed": "sad,ok,happy"}},
    {"field": "nums", "type": "array", "optional": True, "items": {"type": "int32", "optional": True}},
]  # fmt: skip
LEDGER_FIELDS = [
    {"field": "id", "type": "int32", "optional": False},
    {"field": "account", "type": "string", "optional": False},
    {"field": "amount", "type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
     "parameters": {"scale": "3", "connect.decimal.precision": "12"}},
    {"field": "memo", "type": "string", "optional": True},
]  # fmt: skip
SOURCE_FIELDS = ["version", "connector", "name", "ts_ms", "snapshot", "db", "sequence", "schema", "table", "txId",
                 "lsn", "xmin"]  # fmt: skip


def shape(field: dict) -> dict:
    """What a Connect schema field says about the column (not `version` or `doc`)."""
    out = {k: field[k] for k in ("field", "type", "optional", "name", "parameters") if k in field}
    if "fields" in field:
        out["fields"] = [shape(f) for f in field["fields"]]
    if "items" in field:
        out["items"] = shape(field["items"])
    return out


def ledger_row(id_: int, account: str, amount: str | None, memo: str | None) -> dict:
    return {"id": id_, "account": account, "amount": amount and unscaled_b64(amount, 3), "memo": memo}


# ---------------------------------------------------------------------------
# Reading topics
# ---------------------------------------------------------------------------


def topic(table: str) -> str:
    return f"{PREFIX}.public.{table}"


def records(bootstrap: str, name: str, want: int, start: int = 0, timeout: float = WAIT) -> list:
    """(key, value) of the topic's records from `start` once it holds at least `start + want`."""

    def probe():
        high = ck_watermarks(bootstrap, name, 0)[1]
        assert high >= start + want, f"{name} holds {high} records, want {start + want}"
        return high

    wait_until(probe, timeout=timeout, interval=0.2, what=f"{want} records in {name} from offset {start}")
    got = ck_consume_partition(bootstrap, name, 0, start, timeout=30)
    return [
        (json.loads(r.key) if r.key is not None else None, json.loads(r.value) if r.value is not None else None)
        for r in got
    ]


def high(bootstrap: str, name: str) -> int:
    return ck_watermarks(bootstrap, name, 0)[1]


def check_envelope(value: dict, table: str, fields: list) -> dict:
    """Debezium's envelope with its Connect schema; returns the payload."""
    assert set(value) == {"schema", "payload"}, value
    schema = value["schema"]
    assert schema["type"] == "struct" and schema["optional"] is False, schema
    assert schema["name"] == f"{PREFIX}.public.{table}.Envelope", schema
    assert [f["field"] for f in schema["fields"]] == ["before", "after", "source", "op", "ts_ms"], schema
    for row in schema["fields"][:2]:
        assert row["type"] == "struct" and row["optional"] is True, row
        assert row["name"] == f"{PREFIX}.public.{table}.Value", row
        assert [shape(f) for f in row["fields"]] == fields, row["fields"]
    source = schema["fields"][2]
    assert source["name"] == "io.debezium.connector.postgresql.Source" and source["optional"] is False, source
    assert [f["field"] for f in source["fields"]] == SOURCE_FIELDS, source
    assert shape(schema["fields"][3]) == {"field": "op", "type": "string", "optional": False}
    assert shape(schema["fields"][4])["type"] == "int64"
    payload = value["payload"]
    assert set(payload) == {"before", "after", "source", "op", "ts_ms"}, payload
    assert isinstance(payload["ts_ms"], int) and abs(payload["ts_ms"] - time.time() * 1000) < 600_000, payload
    return payload


def check_key(key: dict, table: str, fields: list, payload: dict) -> None:
    assert key is not None, f"{table}: a null key for the row with primary key {payload}"
    assert set(key) == {"schema", "payload"}, key
    assert key["schema"]["type"] == "struct" and key["schema"]["optional"] is False, key
    assert key["schema"]["name"] == f"{PREFIX}.public.{table}.Key", key
    assert [shape(f) for f in key["schema"]["fields"]] == fields, key
    assert key["payload"] == payload, key


def check_source(p: dict, dbname: str, table: str, snapshot: str, tx: Tx | None = None) -> dict:
    src = p["source"]
    assert set(src) >= set(SOURCE_FIELDS), src
    assert isinstance(src["version"], str) and src["version"], src
    assert (src["connector"], src["name"], src["db"], src["schema"], src["table"]) == (
        "postgresql", PREFIX, dbname, "public", table,
    ), src  # fmt: skip
    assert src["snapshot"] == snapshot and src["xmin"] is None, src
    assert isinstance(src["ts_ms"], int), src
    if snapshot in ("true", "last"):
        assert src["txId"] is None and src["sequence"] is None, src
        assert src["lsn"] is None or isinstance(src["lsn"], int), src
    else:
        assert tx is not None
        assert src["txId"] == tx.xid, f"txId {src['txId']}, the transaction was {tx}: {src}"
        # The change's own record starts at or after where the WAL ended before the transaction.
        assert isinstance(src["lsn"], int) and tx.lsn_before <= src["lsn"] < tx.lsn_after, f"{tx}: {src}"
        seq = json.loads(src["sequence"])
        assert isinstance(seq, list) and len(seq) == 2 and all(isinstance(s, str) and s.isdigit() for s in seq), src
        assert seq[1] == str(src["lsn"]), src
        # The commit time, in the server's clock (the same host).
        assert tx.ms_before - 2000 <= src["ts_ms"] <= tx.ms_after + 2000, f"{tx.ms_before}..{tx.ms_after}: {src}"
        # Debezium's `ts_ms` is when the connector processed the change: never before its commit.
        assert p["ts_ms"] >= src["ts_ms"], f"processed at {p['ts_ms']}, before its commit at {src['ts_ms']}"
    return src


# ---------------------------------------------------------------------------
# 1. Snapshot, then changes
# ---------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_postgres_snapshot_then_changes_in_debeziums_envelope(pgdb, start_broker, tmp_path):
    pgdb.run(ITEMS_DDL, ITEMS_ROWS)
    broker = start_connect(start_broker, tmp_path)
    # Debezium skips truncates by default (`skipped.operations=t`); this test wants them.
    config = pgdb.config(**{"table.include.list": "public.items,public.ledger", "heartbeat.interval.ms": "1000",
                            "skipped.operations": "none"})  # fmt: skip
    create(broker, "shop-cdc", config)
    wait_state(broker, "shop-cdc", "RUNNING")
    items, ledger = topic("items"), topic("ledger")
    key_id = [{"field": "id", "type": "int32", "optional": False}]

    # The snapshot: tables in name order, the very last record of all says `last`.
    snap = records(broker.bootstrap, items, 3)
    assert len(snap) == 3, snap
    snap_l = records(broker.bootstrap, ledger, 2)
    assert len(snap_l) == 2, snap_l
    for (k, v), row in zip(snap, [ROW1, ROW2, ROW3]):
        p = check_envelope(v, "items", ITEMS_FIELDS)
        check_key(k, "items", key_id, {"id": row["id"]})
        check_source(p, pgdb.name, "items", "true")
        assert (p["op"], p["before"]) == ("r", None), p
        for col in ROW1:
            assert p["after"][col] == row[col], f"row {row['id']} column {col}: {p['after'][col]!r} != {row[col]!r}"
        assert p["after"] == row
    expected_l = [ledger_row(1, "cash", "10.500", "opening"), ledger_row(2, "bank", "-3.250", None)]
    for (k, v), row, flag in zip(snap_l, expected_l, ["true", "last"]):
        p = check_envelope(v, "ledger", LEDGER_FIELDS)
        check_key(k, "ledger", key_id, {"id": row["id"]})
        check_source(p, pgdb.name, "ledger", flag)
        assert (p["op"], p["before"], p["after"]) == ("r", None, row), p
    snap_row1 = snap[0][1]["payload"]["after"]

    # Changes, each its own transaction or several in one.
    t1 = pgdb.tx("INSERT INTO items SELECT 4, small, big, f4, f8, flag, name, note, price, amount, doc, uid, raw, day, "
                 "at_time, ts, ts3, tstz, span, feeling, nums FROM items WHERE id = 1")  # fmt: skip
    t2 = pgdb.tx("UPDATE items SET name = 'Bobby', price = 99999999.99, note = 'now noted', flag = true WHERE id = 2")
    t3 = pgdb.tx(
        "DELETE FROM items WHERE id = 3",
        "UPDATE items SET id = 30 WHERE id = 1",
        "UPDATE ledger SET amount = 11.000, memo = 'adjusted' WHERE id = 1",
        "DELETE FROM ledger WHERE id = 2",
        "INSERT INTO items_archive VALUES (2, 'still not captured')",
    )
    t4 = pgdb.tx(
        "INSERT INTO items (id, small, name, note) VALUES "
        "(5, 1, 'Toast', (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400)))"
    )
    big = pgdb.one("SELECT note FROM items WHERE id = 5")[0]
    assert len(big) == 12800
    t5 = pgdb.tx("UPDATE items SET small = 2 WHERE id = 5")
    t6 = pgdb.tx("TRUNCATE items, ledger")

    got = records(broker.bootstrap, items, 10, start=3)
    assert len(got) == 10, [(v or {}).get("payload", {}).get("op") for _, v in got]
    got_l = records(broker.bootstrap, ledger, 4, start=2)
    assert len(got_l) == 4, got_l
    ops = [v and v["payload"]["op"] for _, v in got]
    assert ops == ["c", "u", "d", None, "d", None, "c", "c", "u", "t"], ops
    (k_c, c), (k_u, u), (k_d3, d3), (k_t3, tomb3), (k_d1, d1), (k_t1, tomb1), (k_c30, c30), (k_c5, c5), \
        (k_u5, u5), (k_tr, tr) = got  # fmt: skip

    # A streamed row is the snapshot's row with the same values.
    c = check_envelope(c, "items", ITEMS_FIELDS)
    check_key(k_c, "items", key_id, {"id": 4})
    check_source(c, pgdb.name, "items", "false", t1)
    assert c["before"] is None and c["after"] == {**snap_row1, "id": 4} == {**ROW1, "id": 4}, c

    # DEFAULT replica identity: no before image on update.
    u = check_envelope(u, "items", ITEMS_FIELDS)
    check_key(k_u, "items", key_id, {"id": 2})
    check_source(u, pgdb.name, "items", "false", t2)
    assert u["before"] is None, u
    assert u["after"] == {**ROW2, "name": "Bobby", "price": unscaled_b64("99999999.99", 2), "note": "now noted",
                          "flag": True}, u  # fmt: skip

    # One transaction: a delete (key columns only before), a primary key update (delete, its
    # tombstone, create), then the REPLICA IDENTITY FULL table's update and delete.
    d3 = check_envelope(d3, "items", ITEMS_FIELDS)
    check_key(k_d3, "items", key_id, {"id": 3})
    s_d3 = check_source(d3, pgdb.name, "items", "false", t3)
    assert d3["before"] == {**NO_ITEM, "id": 3} and d3["after"] is None, d3
    assert tomb3 is None and k_t3 == k_d3
    d1 = check_envelope(d1, "items", ITEMS_FIELDS)
    check_key(k_d1, "items", key_id, {"id": 1})
    s_d1 = check_source(d1, pgdb.name, "items", "false", t3)
    assert d1["before"] == {**NO_ITEM, "id": 1} and d1["after"] is None, d1
    assert tomb1 is None and k_t1 == k_d1
    c30 = check_envelope(c30, "items", ITEMS_FIELDS)
    check_key(k_c30, "items", key_id, {"id": 30})
    s_c30 = check_source(c30, pgdb.name, "items", "false", t3)
    assert c30["before"] is None and c30["after"] == {**ROW1, "id": 30}, c30
    assert s_d3["lsn"] < s_d1["lsn"] == s_c30["lsn"], (s_d3, s_d1, s_c30)

    (k_lu, lu), (k_ld, ld), (k_lt, ltomb), (k_ltr, ltr) = got_l
    lu = check_envelope(lu, "ledger", LEDGER_FIELDS)
    check_key(k_lu, "ledger", key_id, {"id": 1})
    s_lu = check_source(lu, pgdb.name, "ledger", "false", t3)
    assert lu["op"] == "u", lu
    assert lu["before"] == ledger_row(1, "cash", "10.500", "opening"), lu
    assert lu["after"] == ledger_row(1, "cash", "11.000", "adjusted"), lu
    ld = check_envelope(ld, "ledger", LEDGER_FIELDS)
    check_key(k_ld, "ledger", key_id, {"id": 2})
    s_ld = check_source(ld, pgdb.name, "ledger", "false", t3)
    assert ld["op"] == "d" and ld["before"] == ledger_row(2, "bank", "-3.250", None) and ld["after"] is None, ld
    assert ltomb is None and k_lt == k_ld
    assert s_c30["lsn"] < s_lu["lsn"] < s_ld["lsn"], (s_c30, s_lu, s_ld)

    # TOAST: the insert carries the whole value; an update that leaves it alone does not.
    c5 = check_envelope(c5, "items", ITEMS_FIELDS)
    check_key(k_c5, "items", key_id, {"id": 5})
    check_source(c5, pgdb.name, "items", "false", t4)
    assert c5["after"] == {**NO_ITEM, "id": 5, "small": 1, "name": "Toast", "note": big}, {
        k: v for k, v in c5["after"].items() if k != "note"
    }
    u5 = check_envelope(u5, "items", ITEMS_FIELDS)
    check_key(k_u5, "items", key_id, {"id": 5})
    check_source(u5, pgdb.name, "items", "false", t5)
    assert u5["before"] is None, u5
    assert u5["after"] == {**NO_ITEM, "id": 5, "small": 2, "name": "Toast", "note": UNAVAILABLE}, u5

    # Truncate: one `t` per table, without key or images.
    tr = check_envelope(tr, "items", ITEMS_FIELDS)
    s_tr = check_source(tr, pgdb.name, "items", "false", t6)
    assert k_tr is None and (tr["op"], tr["before"], tr["after"]) == ("t", None, None), tr
    ltr = check_envelope(ltr, "ledger", LEDGER_FIELDS)
    s_ltr = check_source(ltr, pgdb.name, "ledger", "false", t6)
    assert k_ltr is None and (ltr["op"], ltr["before"], ltr["after"]) == ("t", None, None), ltr
    assert s_tr["txId"] == s_ltr["txId"]

    # Commit order: transactions in order, positions increasing (a primary key update's
    # delete and create are one change).
    stream = [c, u, d3, d1, c30, lu, ld, c5, u5, tr]
    lsns = [p["source"]["lsn"] for p in stream]
    assert lsns == sorted(lsns), lsns
    txids = [p["source"]["txId"] for p in stream]
    assert txids == [t1.xid, t2.xid] + [t3.xid] * 5 + [t4.xid, t5.xid, t6.xid], txids
    assert len({t1.xid, t2.xid, t3.xid, t4.xid, t5.xid, t6.xid}) == 6

    # Changes to a table not captured move the position: heartbeats say so.
    heartbeat_topic = f"__debezium-heartbeat.{PREFIX}"
    try:
        beats_before = high(broker.bootstrap, heartbeat_topic)
    except Exception:  # noqa: BLE001 - no heartbeat yet: no topic
        beats_before = 0
    pgdb.tx("INSERT INTO items_archive VALUES (3, 'never captured')")
    beats = records(broker.bootstrap, heartbeat_topic, 1, start=beats_before, timeout=WAIT)
    key, value = beats[-1]
    assert key["payload"] == {"serverName": PREFIX}, key
    assert key["schema"]["name"] == "io.debezium.connector.common.ServerNameKey", key
    assert value["schema"]["name"] == "io.debezium.connector.common.Heartbeat", value
    assert isinstance(value["payload"]["ts_ms"], int), value

    # Nothing more arrived; the table not in table.include.list never got a topic.
    time.sleep(1.0)
    assert high(broker.bootstrap, items) == 13 and high(broker.bootstrap, ledger) == 6
    names = list_topic_names(broker.bootstrap)
    assert topic("items_archive") not in names, sorted(names)
    topics = get(broker, "/connectors/shop-cdc/topics")["shop-cdc"]["topics"]
    assert {items, ledger} <= set(topics) <= {items, ledger, heartbeat_topic}, topics
    status = wait_state(broker, "shop-cdc", "RUNNING")
    assert status["type"] == "source", status


# ---------------------------------------------------------------------------
# 2. A clean restart
# ---------------------------------------------------------------------------


def slot_confirmed(db: PgDb) -> int:
    row = db.one(
        "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::int8 FROM pg_replication_slots WHERE slot_name = %s", db.slot
    )
    assert row is not None, f"no slot {db.slot}"
    return row[0]


@pytest.mark.timeout(180)
def test_postgres_restart_resumes_without_loss_or_repeat(pgdb, start_broker, tmp_path):
    pgdb.run(
        "CREATE TABLE orders (id int4 PRIMARY KEY, item text NOT NULL, price numeric(8, 2), total numeric)",
        "INSERT INTO orders VALUES (1, 'pen', 1.50, 2.5), (2, 'ink', 12.00, NULL)",
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "orders-cdc", pgdb.config(**{"decimal.handling.mode": "string"}))
    wait_state(broker, "orders-cdc", "RUNNING")
    orders = topic("orders")
    fields = [
        {"field": "id", "type": "int32", "optional": False},
        {"field": "item", "type": "string", "optional": False},
        {"field": "price", "type": "string", "optional": True},
        {"field": "total", "type": "string", "optional": True},
    ]

    def payloads(got: list) -> list:
        return [v and check_envelope(v, "orders", fields) for _, v in got]

    snap = payloads(records(broker.bootstrap, orders, 2))
    assert [(p["op"], p["source"]["snapshot"]) for p in snap] == [("r", "true"), ("r", "last")], snap
    assert [p["after"] for p in snap] == [
        {"id": 1, "item": "pen", "price": "1.50", "total": "2.5"},
        {"id": 2, "item": "ink", "price": "12.00", "total": None},
    ]
    t0 = pgdb.tx("INSERT INTO orders VALUES (3, 'pad', 3.25, 3.25)")
    (c3,) = payloads(records(broker.bootstrap, orders, 1, start=2))
    check_source(c3, pgdb.name, "orders", "false", t0)
    assert c3["after"] == {"id": 3, "item": "pad", "price": "3.25", "total": "3.25"}, c3

    # Stopped cleanly: what was handed out is stored; changes made meanwhile wait in the slot.
    assert broker.stop() == 0
    t1 = pgdb.tx("INSERT INTO orders VALUES (4, 'ruler', 0.99, NULL)")
    t2 = pgdb.tx("UPDATE orders SET price = 1.75 WHERE id = 1", "DELETE FROM orders WHERE id = 2")
    broker.start()
    wait_state(broker, "orders-cdc", "RUNNING")
    got = records(broker.bootstrap, orders, 4, start=3)
    assert len(got) == 4, got
    c4, u1, d2, tomb = payloads(got)
    assert c4["op"] == "c" and c4["after"] == {"id": 4, "item": "ruler", "price": "0.99", "total": None}, c4
    check_source(c4, pgdb.name, "orders", "false", t1)
    assert u1["op"] == "u" and u1["after"] == {"id": 1, "item": "pen", "price": "1.75", "total": "2.5"}, u1
    check_source(u1, pgdb.name, "orders", "false", t2)
    assert d2["op"] == "d" and d2["before"]["id"] == 2 and tomb is None, d2
    check_source(d2, pgdb.name, "orders", "false", t2)

    # No second snapshot, nothing repeated; new changes keep coming.
    time.sleep(2.0)
    assert high(broker.bootstrap, orders) == 7, "nothing else arrives"
    t3 = pgdb.tx("INSERT INTO orders VALUES (5, 'tape', 2.00, 2)")
    ((_, last),) = records(broker.bootstrap, orders, 1, start=7)
    p = check_envelope(last, "orders", fields)
    check_source(p, pgdb.name, "orders", "false", t3)
    assert p["after"] == {"id": 5, "item": "tape", "price": "2.00", "total": "2"}, p

    # Once stored, the position is confirmed to the server: the slot does not hold the WAL.
    def confirmed():
        at = slot_confirmed(pgdb)
        assert at >= p["source"]["lsn"], f"slot confirmed {at}, last stored change at {p['source']['lsn']}"
        return True

    wait_until(confirmed, timeout=WAIT, interval=0.3, what="the slot's confirmed position past the last change")
    time.sleep(1.0)
    assert high(broker.bootstrap, orders) == 8
    # Keys: the primary key (a tombstone has its delete's key).
    keys = [k and k["payload"] for k, _ in records(broker.bootstrap, orders, 8)]
    assert keys == [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 1}, {"id": 2}, {"id": 2}, {"id": 5}], keys


# ---------------------------------------------------------------------------
# 3. SIGKILL and a server restart
# ---------------------------------------------------------------------------


class Writer(threading.Thread):
    """Inserts ids 1..n into `ticks`, each in its own transaction, through server restarts."""

    def __init__(self, url: str, n: int, rate: float):
        super().__init__(daemon=True)
        self.url, self.n, self.pause = url, n, 1.0 / rate
        self.done = 0  # ids 1..done are committed
        self.reconnects = 0
        self.error: Exception | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        deadline = time.monotonic() + 90
        i = 1
        try:
            while i <= self.n and not self.stop.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"writer stuck at id {i}")
                try:
                    if conn is None:
                        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                    conn.execute("INSERT INTO ticks VALUES (%s, %s)", (i, f"tick {i}"))
                except psycopg.errors.UniqueViolation:
                    pass  # committed before the connection broke
                except psycopg.OperationalError:
                    self.reconnects += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.1)
                    continue
                self.done = i
                i += 1
                time.sleep(self.pause)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            if conn is not None:
                conn.close()


@pytest.mark.timeout(240)
def test_postgres_kill9_and_server_restart_lose_nothing(pgdb, start_broker, tmp_path):
    # Row 0 is the snapshot: once it is in the topic the slot exists and streaming has begun
    # (a row inserted before that would rightly be in the snapshot instead).
    pgdb.run("CREATE TABLE ticks (id int4 PRIMARY KEY, v text NOT NULL)", "INSERT INTO ticks VALUES (0, 'tick 0')")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    create(broker, "ticks-cdc", pgdb.config(**{"heartbeat.interval.ms": "500"}))
    wait_state(broker, "ticks-cdc", "RUNNING")
    ticks = topic("ticks")
    ((_, snap),) = records(broker.bootstrap, ticks, 1)
    assert (snap["payload"]["op"], snap["payload"]["source"]["snapshot"], snap["payload"]["after"]["id"]) == (
        "r", "last", 0,
    ), snap  # fmt: skip
    n = 1500
    writer = Writer(pgdb.url, n, rate=150)
    writer.start()
    try:
        records(broker.bootstrap, ticks, 200, start=1)
        time.sleep(random.uniform(0.0, 1.0))
        broker.kill9()
        time.sleep(0.5)
        broker.start()
        wait_state(broker, "ticks-cdc", "RUNNING")
        seen = high(broker.bootstrap, ticks)
        records(broker.bootstrap, ticks, 150, start=seen)
        pg_ctl_restart()
        writer.join(timeout=90)
        assert not writer.is_alive(), f"the writer did not finish (at id {writer.done})"
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None, f"writer failed at id {writer.done + 1}: {writer.error!r}"
    assert writer.done == n

    def every_id():
        got = ck_consume_partition(broker.bootstrap, ticks, 0, 1, timeout=30)
        ids = {json.loads(r.value)["payload"]["after"]["id"] for r in got}
        missing = set(range(1, n + 1)) - ids
        assert not missing, f"{len(missing)} ids missing, e.g. {sorted(missing)[:10]}"
        return got

    got = wait_until(every_id, timeout=60, interval=1.0, what=f"ids 1..{n} in {ticks}")
    values = [json.loads(r.value) for r in got]
    snapshots = [(r.offset, v["payload"]["after"]["id"], v["payload"]["source"]["snapshot"]) for r, v in zip(got, values)
                 if v["payload"]["op"] != "c"]  # fmt: skip
    assert not snapshots, f"only creates, no second snapshot: {len(snapshots)} others, {snapshots[:3]}..{snapshots[-3:]}"
    ids = [v["payload"]["after"]["id"] for v in values]
    assert sorted(set(ids)) == list(range(1, n + 1))
    first = list(dict.fromkeys(ids))
    assert first == sorted(first), "ids first appear in commit order"
    # A repeat re-reads the same change: same row, transaction and position.
    by_id: dict = {}
    for v in values:
        p = v["payload"]
        seen_as = (p["after"]["v"], p["source"]["txId"], p["source"]["lsn"])
        assert by_id.setdefault(p["after"]["id"], seen_as) == seen_as, (by_id[p["after"]["id"]], seen_as)
    lsns = [v["payload"]["source"]["lsn"] for v in values]
    rewinds = sum(1 for i in range(1, len(lsns)) if lsns[i] < lsns[i - 1])
    print(f"{len(ids)} records for {n} ids: {len(ids) - len(set(ids))} repeated, {rewinds} rewinds, "
          f"writer reconnected {writer.reconnects} times")  # fmt: skip
    for r, v in zip(got, values):
        row = v["payload"]["after"]
        assert row["v"] == f"tick {row['id']}", v
        assert r.key is not None and json.loads(r.key)["payload"] == {"id": row["id"]}, (r.key, row)
    wait_state(broker, "ticks-cdc", "RUNNING")


# ---------------------------------------------------------------------------
# 4. Errors
# ---------------------------------------------------------------------------


def failed_with(broker, name: str, *words: str) -> dict:
    """Waits for a FAILED task whose trace names every word; returns the status."""

    def probe():
        st = get(broker, f"/connectors/{name}/status")
        tasks = st["tasks"]
        assert tasks and tasks[0]["state"] == "FAILED" and st["connector"]["state"] == "FAILED", st
        trace = tasks[0].get("trace") or ""
        for w in words:
            assert w in trace, f"{w!r} not in the trace: {trace!r}"
        return st

    return wait_until(probe, timeout=WAIT, interval=0.05, what=f"{name} FAILED naming {words}")


@pytest.mark.timeout(180)
def test_postgres_errors_are_clear_and_never_show_the_password(pgdb, start_broker, tmp_path):
    bindir = os.environ.get("WEIR_TEST_PG_BIN") or ""
    recvlogical = os.path.join(bindir, "pg_recvlogical") if bindir else shutil.which("pg_recvlogical")
    if not recvlogical or not os.access(recvlogical, os.X_OK):
        pytest.skip("pg_recvlogical not found (WEIR_TEST_PG_BIN names the server's bin directory)")
    pgdb.run("CREATE TABLE t (id int4 PRIMARY KEY)")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    wrong = "wrong-" + secrets.token_hex(8)
    secrets_shown = [s for s in (wrong, PG_PASSWORD) if s]

    # (a) A wrong password.
    create(broker, "bad-password", pgdb.config(**{"database.password": wrong, "slot.name": pgdb.slot + "_a"}))
    failed_with(broker, "bad-password", "password authentication failed")

    # (b) Nothing to publish.
    create(
        broker,
        "no-table",
        pgdb.config(**{
            "table.include.list": "public.nope",
            "publication.autocreate.mode": "filtered",
            "publication.name": "filtered_pub",
            "slot.name": pgdb.slot + "_b",
        }),
    )  # fmt: skip
    failed_with(broker, "no-table", "no table matches")

    # (c) A slot another session streams from.
    held = pgdb.slot + "_c"
    pgdb.run("CREATE PUBLICATION dbz_publication FOR ALL TABLES")
    pgdb.one("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", held)
    holder = subprocess.Popen(
        [recvlogical, "-h", _URL.hostname, "-p", str(_URL.port or 5432), "-U", urllib.parse.unquote(_URL.username),
         "-d", pgdb.name, "--slot", held, "--start", "-f", "/dev/null", "-o", "proto_version=1",
         "-o", "publication_names=dbz_publication", "--no-loop"],
        env={**os.environ, "PGPASSWORD": PG_PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def active():
            assert holder.poll() is None, f"pg_recvlogical exited: {holder.stderr.read().decode()}"
            row = pgdb.one("SELECT active FROM pg_replication_slots WHERE slot_name = %s", held)
            assert row and row[0], f"slot {held} not active yet"
            return True

        wait_until(active, timeout=WAIT, interval=0.1, what=f"pg_recvlogical streaming from {held}")
        create(broker, "slot-in-use", pgdb.config(**{"slot.name": held}))
        failed_with(broker, "slot-in-use", "in use", held)
        assert holder.poll() is None, "the other session keeps its slot"
    finally:
        holder.terminate()
        holder.wait(timeout=10)

    # The password is shown nowhere.
    config = get(broker, "/connectors/bad-password/config")
    assert config["database.password"] == "[hidden]", config
    answers = {}
    for name in ("bad-password", "no-table", "slot-in-use"):
        for path in (f"/connectors/{name}", f"/connectors/{name}/config", f"/connectors/{name}/status",
                     f"/connectors/{name}/tasks", f"/connectors/{name}/tasks/0/status"):  # fmt: skip
            answers[path] = json.dumps(get(broker, path))
    answers["expand"] = json.dumps(get(broker, "/connectors?expand=info&expand=status"))
    for path, text in answers.items():
        for s in secrets_shown:
            assert s not in text, f"GET {path} shows a password: {text}"
    assert broker.stop() == 0
    log = broker.log_path.read_text(errors="replace")
    assert "password authentication failed" in log, "the log says why the task failed"
    for s in secrets_shown:
        assert s not in log, "the log shows a password"


# ---------------------------------------------------------------------------
# 5. Validation
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_config_validate(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    base = {
        "connector.class": CLASS,
        "database.hostname": _URL.hostname,
        "database.port": str(_URL.port or 5432),
        "database.user": urllib.parse.unquote(_URL.username or ""),
        "database.password": PG_PASSWORD,
        "database.dbname": "postgres",
        "topic.prefix": PREFIX,
        "key.converter": JSON,
        "value.converter": JSON,
    }

    def errors(config: dict) -> dict:
        _, payload = call(broker, "PUT", f"/connector-plugins/{CLASS}/config/validate", config, status=200)
        found = {c["value"]["name"]: c["value"]["errors"] for c in payload["configs"] if c["value"]["errors"]}
        assert payload["error_count"] == sum(len(e) for e in found.values()), payload
        assert not PG_PASSWORD or PG_PASSWORD not in json.dumps(payload), payload
        return found

    assert errors(base) == {}
    assert errors({**base, "plugin.name": "pgoutput", "snapshot.mode": "when_needed", "slot.name": "cdc_1",
                   "publication.autocreate.mode": "filtered", "decimal.handling.mode": "string",
                   "table.include.list": "public\\.orders,inventory\\..*"}) == {}  # fmt: skip
    found = errors({**base, "snapshot.mode": "sometimes"})
    assert list(found) == ["snapshot.mode"] and "sometimes" in found["snapshot.mode"][0], found
    found = errors({**base, "plugin.name": "decoderbufs"})
    assert list(found) == ["plugin.name"] and "decoderbufs" in found["plugin.name"][0], found
    found = errors({**base, "slot.name": "Bad-Slot"})
    assert list(found) == ["slot.name"] and found["slot.name"][0], found
    found = errors({**base, "snapshot.mode": "sometimes", "plugin.name": "decoderbufs", "slot.name": "x" * 64})
    assert sorted(found) == ["plugin.name", "slot.name", "snapshot.mode"], found
    found = errors({**base, "database.dbname": ""})
    assert list(found) == ["database.dbname"], found
    # A config that does not validate is refused at creation, naming the key.
    _, payload = call(
        broker, "POST", "/connectors", {"name": "bad", "config": {**base, "snapshot.mode": "sometimes"}}, status=400
    )
    assert "snapshot.mode" in payload["message"], payload
    assert get(broker, "/connectors") == []
