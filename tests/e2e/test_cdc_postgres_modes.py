"""The PostgreSQL source's value modes and shaping keys, through the real `weir` binary and its
REST API.

Against the cluster `scripts/test` starts (WEIR_TEST_PG_URL, wal_level=logical), reusing
test_cdc_postgres's databases (one per test, dropped at the end with its slots) and readers.
Where a test runs several connectors on one database, each has its own slot, publication and
`topic.prefix`. Records are read back from the topics as JsonConverter (schemas.enable=true)
writes them and checked field by field: the Connect schema of every column (type, optional,
name, version, parameters) and its value, in the snapshot (`op: r`) and in the stream
(`op: c`, `u`, `d`). A connector's RUNNING state comes before its slot and snapshot exist,
so each test reads the snapshot before it changes anything.

* `time.precision.mode=connect`: `date`, `time(n)`, `timestamp(n)` as Kafka Connect's `Date`
  (days), `Time` (milliseconds of the day, truncated) and `Timestamp` (epoch milliseconds,
  floored), whatever the precision; `adaptive_time_microseconds`: `time(3)` (and `time(6)`)
  as `MicroTime` in microseconds while `timestamp(3)` stays Debezium's `Timestamp` in ms.
* `binary.handling.mode` `hex` (lower case) and `base64-url-safe` (`-` `_`, padded as Java's
  `Base64.getUrlEncoder()`): `bytea` as a string; `interval.handling.mode=string`: ISO 8601
  with every component (`io.debezium.time.Interval`), the default numeric `MicroDuration`
  alongside; an unchanged TOASTed `bytea` is Debezium's placeholder string in both modes.
* `column.exclude.list` / `column.include.list`: the columns left out are absent from
  `before`, `after` and the row schema (also under REPLICA IDENTITY FULL), a primary key
  column left out of the value stays in the key, and another table's same-named column is
  untouched.
* `message.key.columns` on a table without a primary key: a key of that column (schema and
  payload) on snapshot rows, inserts, updates, deletes and their tombstones; changing it is a
  delete and a create, as for a primary key. Naming a missing column fails the task, naming it.
  Several key columns come in Debezium's order (the table's) and optionality (a nullable
  column is optional).
* `heartbeat.action.query` with `heartbeat.interval.ms=500` runs about every 500 ms while the
  connector streams: a captured table gains rows (and their records), and so does a table
  not captured (the heartbeats then carry the position).
* `database.initial.statements` run, in order, on the connector's connections (`;;` is a
  semicolon): the session's `application_name` shows in pg_stat_activity while it runs; a
  failing statement fails the task with a trace quoting it. What they set stays with the
  connector (no session of it left once it is deleted, none lent to another connector).
* Debezium 1.x's `table.whitelist` captures like `table.include.list`; setting both (or
  `table.blacklist` with `table.exclude.list`, `column.whitelist` with
  `column.include.list`) is refused by the config validation and at creation, naming the old key.

Negative checks ("nothing else arrived") are ordered, not timed: the last change of a test is
one that must arrive, and a connector hands changes out in commit order.
"""

from __future__ import annotations

import base64
import os
import secrets
from datetime import date, datetime, time as dtime, timedelta

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

from helpers import list_topic_names, wait_until  # noqa: E402
from test_cdc_postgres import (  # noqa: E402
    FAST_RESTARTS,
    SOURCE_FIELDS,
    PgDb,
    UNAVAILABLE,
    Tx,
    duration_us,
    failed_with,
    high,
    pgdb,  # noqa: F401 - the fixture
    records,
)
from test_connect import call, create, get, start_connect, wait_state  # noqa: E402

WAIT = 30.0
EPOCH = datetime(1970, 1, 1)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def connector_config(db: PgDb, prefix: str, **extra) -> dict:
    """Debezium's keys, with a slot, publication and topic prefix of the connector's own."""
    return db.config(**{
        "topic.prefix": prefix,
        "slot.name": f"{db.slot}_{prefix}",
        "publication.name": f"pub_{prefix}",
        **extra,
    })  # fmt: skip


def topic(prefix: str, table: str) -> str:
    return f"{prefix}.public.{table}"


def col(field: str, type_: str, optional: bool = True, name: str | None = None, **extra) -> dict:
    """A column's Connect schema as JsonConverter writes it (named types carry version 1)."""
    out = {"field": field, "type": type_, "optional": optional}
    if name:
        out["name"] = name
        out["version"] = 1
    out.update(extra)
    return out


def shape(field: dict) -> dict:
    """What a Connect schema field says (not `doc` or `default`)."""
    return {k: field[k] for k in ("field", "type", "optional", "name", "version", "parameters") if k in field}


def envelope(value: dict, db: PgDb, prefix: str, table: str, fields: list) -> dict:
    """Debezium's envelope with its Connect schema (the row's columns exactly `fields`);
    returns the payload."""
    assert value is not None and set(value) == {"schema", "payload"}, value
    schema = value["schema"]
    assert schema["type"] == "struct" and schema["name"] == f"{prefix}.public.{table}.Envelope", schema
    assert [f["field"] for f in schema["fields"]] == ["before", "after", "source", "op", "ts_ms"], schema
    for row in schema["fields"][:2]:
        assert row["type"] == "struct" and row["optional"] is True, row
        assert row["name"] == f"{prefix}.public.{table}.Value", row
        assert [shape(f) for f in row["fields"]] == fields, row["fields"]
    assert [f["field"] for f in schema["fields"][2]["fields"]] == SOURCE_FIELDS, schema["fields"][2]
    p = value["payload"]
    assert set(p) == {"before", "after", "source", "op", "ts_ms"}, p
    src = p["source"]
    assert (src["connector"], src["name"], src["db"], src["schema"], src["table"]) == (
        "postgresql", prefix, db.name, "public", table,
    ), src  # fmt: skip
    return p


def streamed(p: dict, tx: Tx) -> None:
    """A change of the stream, from transaction `tx`."""
    src = p["source"]
    assert src["snapshot"] == "false" and src["txId"] == tx.xid, f"{tx}: {src}"
    assert isinstance(src["lsn"], int) and tx.lsn_before <= src["lsn"] < tx.lsn_after, f"{tx}: {src}"


def check_key(key: dict | None, prefix: str, table: str, fields: list, payload: dict) -> None:
    assert key is not None, f"{prefix}.{table}: no key, want {payload}"
    assert set(key) == {"schema", "payload"}, key
    schema = key["schema"]
    assert (schema["type"], schema["optional"], schema["name"]) == (
        "struct", False, f"{prefix}.public.{table}.Key",
    ), key  # fmt: skip
    assert [shape(f) for f in schema["fields"]] == fields, key
    assert key["payload"] == payload, key


def ops(got: list) -> list:
    return [v and v["payload"]["op"] for _, v in got]


def ms_of_day(t: dtime) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def us_of_day(t: dtime) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def epoch_ms(dt: datetime) -> int:
    """Epoch milliseconds, floored (as Java's Instant.toEpochMilli)."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


def epoch_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def epoch_days(d: date) -> int:
    return (d - EPOCH.date()).days


def sql_literal(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return "'\\x" + v.hex() + "'"
    return "'" + str(v) + "'"


def insert(table: str, rows: list) -> str:
    return f"INSERT INTO {table} VALUES " + ", ".join(
        "(" + ", ".join(str(v) if isinstance(v, int) else sql_literal(v) for v in row) + ")" for row in rows
    )


# ---------------------------------------------------------------------------
# 1. time.precision.mode
# ---------------------------------------------------------------------------

# (id, date, time(6), time(3), timestamp(6), timestamp(3))
TIME_ROWS = [
    (1, date(2024, 2, 29), dtime(10, 34, 56, 789123), dtime(10, 34, 56, 789000),
     datetime(2024, 2, 29, 10, 34, 56, 789123), datetime(2024, 2, 29, 10, 34, 56, 789000)),
    (2, date(1969, 12, 31), dtime(0, 0, 0), dtime(23, 59, 59, 999000),
     datetime(1969, 12, 31, 23, 59, 59, 999500), datetime(1970, 1, 1, 0, 0, 0, 1000)),
    (3, date(1970, 1, 2), dtime(23, 59, 59, 999999), dtime(0, 0, 0, 1000),
     datetime(1970, 1, 1, 0, 0, 1, 999999), datetime(2000, 1, 1, 0, 0, 0, 500000)),
    (4, None, None, None, None, None),
]  # fmt: skip


def connect_row(r: tuple) -> dict:
    """Kafka Connect's Date (days), Time (ms of the day) and Timestamp (epoch ms)."""
    id_, d, t6, t3, ts6, ts3 = r
    f = lambda v, conv: None if v is None else conv(v)  # noqa: E731
    return {"id": id_, "d": f(d, epoch_days), "t6": f(t6, ms_of_day), "t3": f(t3, ms_of_day),
            "ts6": f(ts6, epoch_ms), "ts3": f(ts3, epoch_ms)}  # fmt: skip


def micro_row(r: tuple) -> dict:
    """adaptive_time_microseconds: every time in µs; timestamps adaptive (ms up to precision 3)."""
    id_, d, t6, t3, ts6, ts3 = r
    f = lambda v, conv: None if v is None else conv(v)  # noqa: E731
    return {"id": id_, "d": f(d, epoch_days), "t6": f(t6, us_of_day), "t3": f(t3, us_of_day),
            "ts6": f(ts6, epoch_us), "ts3": f(ts3, epoch_ms)}  # fmt: skip


CONNECT_FIELDS = [
    col("id", "int32", False),
    col("d", "int32", name="org.apache.kafka.connect.data.Date"),
    col("t6", "int32", name="org.apache.kafka.connect.data.Time"),
    col("t3", "int32", name="org.apache.kafka.connect.data.Time"),
    col("ts6", "int64", name="org.apache.kafka.connect.data.Timestamp"),
    col("ts3", "int64", name="org.apache.kafka.connect.data.Timestamp"),
]
MICRO_FIELDS = [
    col("id", "int32", False),
    col("d", "int32", name="io.debezium.time.Date"),
    col("t6", "int64", name="io.debezium.time.MicroTime"),
    col("t3", "int64", name="io.debezium.time.MicroTime"),
    col("ts6", "int64", name="io.debezium.time.MicroTimestamp"),
    col("ts3", "int64", name="io.debezium.time.Timestamp"),
]
KEY_ID = [col("id", "int32", False)]


@pytest.mark.timeout(120)
def test_time_precision_connect_and_adaptive_time_microseconds(pgdb, start_broker, tmp_path):
    """The same table under two connectors: `connect` gives Kafka Connect's Date / Time /
    Timestamp in days / ms of the day / epoch ms (microseconds truncated, before 1970 floored);
    `adaptive_time_microseconds` gives `time(3)` and `time(6)` as MicroTime (µs), `timestamp(6)`
    as MicroTimestamp and `timestamp(3)` as Debezium's Timestamp (ms). Snapshot rows and
    streamed inserts alike."""
    pgdb.run(
        "CREATE TABLE times (id int4 PRIMARY KEY, d date, t6 time(6), t3 time(3), ts6 timestamp(6), "
        "ts3 timestamp(3))",
        insert("times", TIME_ROWS[:2]),
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "conn-cdc", connector_config(pgdb, "conn", **{"time.precision.mode": "connect"}))
    micro = {"time.precision.mode": "adaptive_time_microseconds"}
    create(broker, "micro-cdc", connector_config(pgdb, "micro", **micro))
    wait_state(broker, "conn-cdc", "RUNNING")
    wait_state(broker, "micro-cdc", "RUNNING")

    for prefix, fields, expect in (("conn", CONNECT_FIELDS, connect_row), ("micro", MICRO_FIELDS, micro_row)):
        snap = records(broker.bootstrap, topic(prefix, "times"), 2)
        assert ops(snap) == ["r", "r"], snap
        for (k, v), r, flag in zip(snap, TIME_ROWS[:2], ["true", "last"]):
            p = envelope(v, pgdb, prefix, "times", fields)
            check_key(k, prefix, "times", KEY_ID, {"id": r[0]})
            assert p["source"]["snapshot"] == flag and p["before"] is None, p
            want = expect(r)
            for c in want:
                assert p["after"][c] == want[c], f"{prefix} row {r[0]} column {c}: {p['after'][c]!r} != {want[c]!r}"
            assert p["after"] == want, p

    tx = pgdb.tx(insert("times", TIME_ROWS[2:]))
    for prefix, fields, expect in (("conn", CONNECT_FIELDS, connect_row), ("micro", MICRO_FIELDS, micro_row)):
        got = records(broker.bootstrap, topic(prefix, "times"), 2, start=2)
        assert ops(got) == ["c", "c"], got
        for (k, v), r in zip(got, TIME_ROWS[2:]):
            p = envelope(v, pgdb, prefix, "times", fields)
            check_key(k, prefix, "times", KEY_ID, {"id": r[0]})
            streamed(p, tx)
            want = expect(r)
            for c in want:
                assert p["after"][c] == want[c], f"{prefix} row {r[0]} column {c}: {p['after'][c]!r} != {want[c]!r}"
            assert p["before"] is None and p["after"] == want, p
    # Spot checks of the arithmetic above, written out.
    assert connect_row(TIME_ROWS[0])["t6"] == 38_096_789 and micro_row(TIME_ROWS[0])["t6"] == 38_096_789_123
    assert connect_row(TIME_ROWS[1])["ts6"] == -1 and micro_row(TIME_ROWS[1])["ts6"] == -500
    assert connect_row(TIME_ROWS[2])["t6"] == 86_399_999 and micro_row(TIME_ROWS[2])["t3"] == 1000
    assert high(broker.bootstrap, topic("conn", "times")) == 4 and high(broker.bootstrap, topic("micro", "times")) == 4


# ---------------------------------------------------------------------------
# 2. binary.handling.mode and interval.handling.mode
# ---------------------------------------------------------------------------

# (id, bytea, (interval as written, as Debezium's string, as MicroDuration))
SPAN_1 = ("1 year 2 months 3 days 04:05:06.78", "P1Y2M3DT4H5M6.78S",
          duration_us(months=14, days_=3, seconds=4 * 3600 + 5 * 60 + 6.78))  # fmt: skip
SPAN_0 = ("0", "P0Y0M0DT0H0M0S", 0)
SPAN_NEG = ("-1 day +02:00:00", "P0Y0M-1DT2H0M0S", duration_us(days_=-1, seconds=2 * 3600))
BLOB_ROWS = [
    (1, b"\xfb\xff\x00\x01\x7e", SPAN_1),
    (2, b"", SPAN_0),
    (3, None, SPAN_NEG),
    (4, b"\xfb\xef", SPAN_1),
    (5, b"\x00", SPAN_0),
    (6, b"\xff\xfe\xfd\x3e\x3f", SPAN_NEG),
    (7, b"\x3f", None),
]


def blob_sql(rows: list) -> str:
    return "INSERT INTO blobs VALUES " + ", ".join(
        f"({i}, {sql_literal(b)}, {sql_literal(s and s[0])})" for i, b, s in rows
    )


@pytest.mark.timeout(120)
def test_binary_and_interval_handling_modes(pgdb, start_broker, tmp_path):
    """`binary.handling.mode=hex` with `interval.handling.mode=string`, and
    `binary.handling.mode=base64-url-safe` with the default numeric intervals, on one table:
    `bytea` is a string (lower-case hex; URL-safe base64 with padding, '-' and '_' where
    standard base64 has '+' and '/'); the intervals are Debezium's ISO strings
    (`io.debezium.time.Interval`, every component) or MicroDuration. Snapshot and stream; an
    unchanged TOASTed bytea is Debezium's placeholder string in both modes."""
    pgdb.run("CREATE TABLE blobs (id int4 PRIMARY KEY, raw bytea, span interval)", blob_sql(BLOB_ROWS[:3]))
    broker = start_connect(start_broker, tmp_path)
    create(broker, "hex-cdc", connector_config(pgdb, "hexa", **{"binary.handling.mode": "hex",
                                                                "interval.handling.mode": "string"}))  # fmt: skip
    create(broker, "url-cdc", connector_config(pgdb, "url", **{"binary.handling.mode": "base64-url-safe"}))
    wait_state(broker, "hex-cdc", "RUNNING")
    wait_state(broker, "url-cdc", "RUNNING")
    hex_fields = [col("id", "int32", False), col("raw", "string"),
                  col("span", "string", name="io.debezium.time.Interval")]  # fmt: skip
    url_fields = [col("id", "int32", False), col("raw", "string"),
                  col("span", "int64", name="io.debezium.time.MicroDuration")]  # fmt: skip

    def hex_row(r):
        i, b, s = r
        return {"id": i, "raw": None if b is None else b.hex(), "span": s and s[1]}

    def url_row(r):
        i, b, s = r
        return {"id": i, "raw": None if b is None else base64.urlsafe_b64encode(b).decode(), "span": s and s[2]}

    # The values themselves, written out: padding kept, '-' '_' for '+' '/'.
    assert url_row(BLOB_ROWS[0])["raw"] == "-_8AAX4=" and base64.b64encode(BLOB_ROWS[0][1]).decode() == "+/8AAX4="
    assert url_row(BLOB_ROWS[3])["raw"] == "--8=" and url_row(BLOB_ROWS[5])["raw"] == "__79Pj8="
    assert hex_row(BLOB_ROWS[5])["raw"] == "fffefd3e3f"

    def check(start: int, rows: list, op: str, tx: Tx | None) -> None:
        for prefix, fields, expect in (("hexa", hex_fields, hex_row), ("url", url_fields, url_row)):
            got = records(broker.bootstrap, topic(prefix, "blobs"), len(rows), start=start)
            assert ops(got) == [op] * len(rows), got
            for n, ((k, v), r) in enumerate(zip(got, rows)):
                p = envelope(v, pgdb, prefix, "blobs", fields)
                check_key(k, prefix, "blobs", KEY_ID, {"id": r[0]})
                if tx is None:
                    assert p["source"]["snapshot"] == ("last" if n == len(rows) - 1 else "true"), p
                else:
                    streamed(p, tx)
                want = expect(r)
                for c in want:
                    assert p["after"][c] == want[c], f"{prefix} row {r[0]} {c}: {p['after'][c]!r} != {want[c]!r}"
                assert p["before"] is None and p["after"] == want, p

    check(0, BLOB_ROWS[:3], "r", None)
    tx = pgdb.tx(blob_sql(BLOB_ROWS[3:]))
    check(3, BLOB_ROWS[3:], "c", tx)

    # A TOASTed bytea (incompressible, stored out of line) an update leaves alone is Debezium's
    # placeholder string in every string mode (PostgresValueConverter: convertBinaryToHex, and
    # the base64 modes through handleUnknownData); the insert before it carries the bytes.
    t_big = pgdb.tx("INSERT INTO blobs VALUES (8, (SELECT string_agg(decode(md5(random()::text), 'hex'), ''::bytea) "
                    "FROM generate_series(1, 600)), '0')")  # fmt: skip
    big = bytes(pgdb.one("SELECT raw FROM blobs WHERE id = 8")[0])
    assert len(big) == 9600
    t_upd = pgdb.tx("UPDATE blobs SET span = '-1 day +02:00:00' WHERE id = 8")
    for prefix, fields, expect in (("hexa", hex_fields, hex_row), ("url", url_fields, url_row)):
        got = records(broker.bootstrap, topic(prefix, "blobs"), 2, start=7)
        assert ops(got) == ["c", "u"], got
        (k_c, c), (k_u, u) = got
        c, u = envelope(c, pgdb, prefix, "blobs", fields), envelope(u, pgdb, prefix, "blobs", fields)
        check_key(k_c, prefix, "blobs", KEY_ID, {"id": 8})
        check_key(k_u, prefix, "blobs", KEY_ID, {"id": 8})
        streamed(c, t_big)
        streamed(u, t_upd)
        assert c["after"] == expect((8, big, SPAN_0)), {**c["after"], "raw": c["after"]["raw"][:40] + "..."}
        assert u["before"] is None and u["after"] == {**expect((8, None, SPAN_NEG)), "raw": UNAVAILABLE}, u
    assert high(broker.bootstrap, topic("hexa", "blobs")) == 9 and high(broker.bootstrap, topic("url", "blobs")) == 9


# ---------------------------------------------------------------------------
# 3. column.exclude.list / column.include.list
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_column_exclude_and_include_lists(pgdb, start_broker, tmp_path):
    """`column.exclude.list=public\\.people\\.secret,public\\.people\\.id` and, in another
    connector, `column.include.list=public\\.people\\.(name|secret)`: the columns left out are
    absent from the row schema and from `before` and `after` (snapshot, insert, REPLICA IDENTITY
    FULL update and delete), while the primary key `id`, left out of the value by both, is the
    key of every record (tombstones included). Another table's `secret` column, which the
    pattern does not name, stays."""
    pgdb.run(
        "CREATE TABLE people (id int4 PRIMARY KEY, name text NOT NULL, secret text, note text)",
        "ALTER TABLE people REPLICA IDENTITY FULL",
        "CREATE TABLE other (id int4 PRIMARY KEY, secret text)",
        "INSERT INTO people VALUES (1, 'Ada', 's1', 'n1'), (2, 'Bob', NULL, 'n2')",
        "INSERT INTO other VALUES (1, 'kept')",
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "ex-cdc", connector_config(pgdb, "ex", **{
        "column.exclude.list": r"public\.people\.secret,public\.people\.id"}))  # fmt: skip
    create(broker, "in-cdc", connector_config(pgdb, "inc", **{
        "table.include.list": r"public\.people", "column.include.list": r"public\.people\.(name|secret)"}))  # fmt: skip
    wait_state(broker, "ex-cdc", "RUNNING")
    wait_state(broker, "in-cdc", "RUNNING")
    # The snapshots first (RUNNING comes before the slot and its snapshot exist).
    for prefix in ("ex", "inc"):
        assert ops(records(broker.bootstrap, topic(prefix, "people"), 2)) == ["r", "r"]
    t1 = pgdb.tx("INSERT INTO people VALUES (3, 'Cy', 's3', 'n3')")
    t2 = pgdb.tx("UPDATE people SET secret = 's1b', note = 'n1b' WHERE id = 1")
    t3 = pgdb.tx("DELETE FROM people WHERE id = 2")
    t4 = pgdb.tx("INSERT INTO other VALUES (2, 'still kept')")

    full = {
        1: {"id": 1, "name": "Ada", "secret": "s1", "note": "n1"},
        2: {"id": 2, "name": "Bob", "secret": None, "note": "n2"},
        3: {"id": 3, "name": "Cy", "secret": "s3", "note": "n3"},
        "1b": {"id": 1, "name": "Ada", "secret": "s1b", "note": "n1b"},
    }
    # (op, key id, before, after, snapshot flag or transaction)
    changes = [("r", 1, None, full[1], "true"), ("r", 2, None, full[2], "last"), ("c", 3, None, full[3], t1),
               ("u", 1, full[1], full["1b"], t2), ("d", 2, full[2], None, t3)]  # fmt: skip
    for prefix, fields in (
        ("ex", [col("name", "string", False), col("note", "string")]),
        ("inc", [col("name", "string", False), col("secret", "string")]),
    ):
        names = [f["field"] for f in fields]

        def cut(row):
            return row and {c: row[c] for c in names}

        want = len(changes) + 1  # and the delete's tombstone
        got = records(broker.bootstrap, topic(prefix, "people"), want)
        assert ops(got) == ["r", "r", "c", "u", "d", None], got
        for (k, v), (op, key_id, before, after, when) in zip(got, changes):
            p = envelope(v, pgdb, prefix, "people", fields)
            check_key(k, prefix, "people", KEY_ID, {"id": key_id})
            assert (p["op"], p["before"], p["after"]) == (op, cut(before), cut(after)), (prefix, p)
            if isinstance(when, Tx):
                streamed(p, when)
            else:
                assert p["source"]["snapshot"] == when, p
        k, v = got[5]
        assert v is None, got[5]
        check_key(k, prefix, "people", KEY_ID, {"id": 2})

    # `other` is captured by the first connector only, with every column.
    other_fields = [col("id", "int32", False), col("secret", "string")]
    got = records(broker.bootstrap, topic("ex", "other"), 2)
    assert ops(got) == ["r", "c"], got
    for (k, v), row in zip(got, [{"id": 1, "secret": "kept"}, {"id": 2, "secret": "still kept"}]):
        p = envelope(v, pgdb, "ex", "other", other_fields)
        check_key(k, "ex", "other", KEY_ID, {"id": row["id"]})
        assert p["after"] == row, p
    streamed(envelope(got[1][1], pgdb, "ex", "other", other_fields), t4)
    # Snapshot order is by table name: `other` then `people`, so people's last row says `last`.
    assert got[0][1]["payload"]["source"]["snapshot"] == "true"
    assert high(broker.bootstrap, topic("ex", "people")) == 6 and high(broker.bootstrap, topic("inc", "people")) == 6
    assert topic("inc", "other") not in list_topic_names(broker.bootstrap)


# ---------------------------------------------------------------------------
# 4. message.key.columns
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_message_key_columns_give_a_table_without_primary_key_a_key(pgdb, start_broker, tmp_path):
    """`message.key.columns=public.events:code` on a table without a primary key (REPLICA
    IDENTITY FULL): every record's key is `{code}` with its schema (snapshot rows, insert,
    update, delete and its tombstone); an update of `code` is a delete of the old key, its
    tombstone and a create of the new one. A table the key does not name still has no key. A
    second connector naming a column `events` lacks fails, its trace naming the column."""
    pgdb.run(
        "CREATE TABLE events (seq int4 NOT NULL, code text NOT NULL, region text, n int4)",
        "ALTER TABLE events REPLICA IDENTITY FULL",
        "CREATE TABLE plain (v text)",
        "INSERT INTO events VALUES (1, 'a', 'eu', 10), (2, 'b', NULL, 20)",
    )
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    create(broker, "key-cdc", connector_config(pgdb, "k", **{"message.key.columns": "public.events:code"}))
    wait_state(broker, "key-cdc", "RUNNING")
    missing = "nope_" + secrets.token_hex(3)
    create(broker, "bad-key", connector_config(pgdb, "kbad", **{"message.key.columns": f"public.events:{missing}"}))
    failed_with(broker, "bad-key", "message.key.columns", missing, "public.events")
    # The snapshot first (RUNNING comes before the slot and its snapshot exist).
    assert ops(records(broker.bootstrap, topic("k", "events"), 2)) == ["r", "r"]

    t1 = pgdb.tx("INSERT INTO events VALUES (3, 'c', 'us', 30)")
    t2 = pgdb.tx("UPDATE events SET n = 11 WHERE code = 'a'")
    t3 = pgdb.tx("DELETE FROM events WHERE code = 'b'")
    t4 = pgdb.tx("UPDATE events SET code = 'z' WHERE code = 'c'")
    t5 = pgdb.tx("INSERT INTO plain VALUES ('no key')")
    fields = [col("seq", "int32", False), col("code", "string", False), col("region", "string"), col("n", "int32")]
    key_fields = [col("code", "string", False)]

    def row(seq, code, region, n):
        return {"seq": seq, "code": code, "region": region, "n": n}

    a, b, c = row(1, "a", "eu", 10), row(2, "b", None, 20), row(3, "c", "us", 30)
    a2, z = {**a, "n": 11}, {**c, "code": "z"}
    # (op, key code, before, after, snapshot flag or transaction); op None: a tombstone.
    want = [("r", "a", None, a, "true"), ("r", "b", None, b, "last"), ("c", "c", None, c, t1),
            ("u", "a", a, a2, t2), ("d", "b", b, None, t3), (None, "b", None, None, None),
            ("d", "c", c, None, t4), (None, "c", None, None, None), ("c", "z", None, z, t4)]  # fmt: skip
    got = records(broker.bootstrap, topic("k", "events"), len(want))
    assert ops(got) == [w[0] for w in want], got
    for (k, v), (op, code, before, after, when) in zip(got, want):
        check_key(k, "k", "events", key_fields, {"code": code})
        if op is None:
            assert v is None
            continue
        p = envelope(v, pgdb, "k", "events", fields)
        assert (p["op"], p["before"], p["after"]) == (op, before, after), p
        if isinstance(when, Tx):
            streamed(p, when)
        else:
            assert p["source"]["snapshot"] == when, p

    # A table without a primary key that message.key.columns does not name: no key.
    ((k, v),) = records(broker.bootstrap, topic("k", "plain"), 1)
    assert k is None, k
    p = envelope(v, pgdb, "k", "plain", [col("v", "string")])
    assert (p["op"], p["after"]) == ("c", {"v": "no key"}), p
    streamed(p, t5)
    assert high(broker.bootstrap, topic("k", "events")) == len(want)
    # Still failed, the other one still running.
    assert get(broker, "/connectors/bad-key/status")["tasks"][0]["state"] == "FAILED"
    wait_state(broker, "key-cdc", "RUNNING")


@pytest.mark.timeout(120)
def test_message_key_columns_follow_debeziums_column_order_and_optionality(pgdb, start_broker, tmp_path):
    """Debezium's CustomKeyMapper keeps the table's column order whatever order
    `message.key.columns` lists them in, and a key field is optional when its column is
    nullable (TableSchemaBuilder.addField: `column.isOptional()`), in the key and the value
    alike: `public.events:region,code` on (seq, code NOT NULL, region) gives the key
    `{code, region}` with `region` optional."""
    pgdb.run(
        "CREATE TABLE events (seq int4 NOT NULL, code text NOT NULL, region text)",
        "INSERT INTO events VALUES (1, 'a', 'eu'), (2, 'b', NULL)",
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "key2-cdc", connector_config(pgdb, "k2", **{"message.key.columns": "public.events:region,code"}))
    wait_state(broker, "key2-cdc", "RUNNING")
    got = records(broker.bootstrap, topic("k2", "events"), 2)
    fields = [col("seq", "int32", False), col("code", "string", False), col("region", "string")]
    key_fields = [col("code", "string", False), col("region", "string")]
    for (k, v), r in zip(got, [{"seq": 1, "code": "a", "region": "eu"}, {"seq": 2, "code": "b", "region": None}]):
        assert v["payload"]["after"] == r, v
        assert [f["field"] for f in k["schema"]["fields"]] == ["code", "region"], k
        assert list(k["payload"]) == ["code", "region"], k
        check_key(k, "k2", "events", key_fields, {"code": r["code"], "region": r["region"]})
        envelope(v, pgdb, "k2", "events", fields)


# ---------------------------------------------------------------------------
# 5. heartbeat.action.query
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_heartbeat_action_query_runs_every_interval(pgdb, start_broker, tmp_path):
    """`heartbeat.action.query` with `heartbeat.interval.ms=500`: one connector inserts into
    the table it captures (`hb`), whose rows then also arrive as `c` records; another inserts
    into a table it does not capture (`hb_quiet`), and heartbeats carry the position those
    inserts move. Both tables gain rows while the connectors run, about one per interval (never
    two within 300 ms)."""
    pgdb.run(
        "CREATE TABLE hb (id serial PRIMARY KEY, ts timestamptz NOT NULL)",
        "CREATE TABLE hb_quiet (id serial PRIMARY KEY, ts timestamptz NOT NULL)",
        "CREATE TABLE data (id int4 PRIMARY KEY)",
        "INSERT INTO data VALUES (1)",
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "hb-cdc", connector_config(pgdb, "hba", **{
        "table.include.list": r"public\.hb", "heartbeat.interval.ms": "500",
        "heartbeat.action.query": "INSERT INTO hb (ts) VALUES (now())"}))  # fmt: skip
    create(broker, "quiet-cdc", connector_config(pgdb, "hbq", **{
        "table.include.list": r"public\.data", "heartbeat.interval.ms": "500",
        "heartbeat.action.query": "INSERT INTO hb_quiet (ts) VALUES (now())"}))  # fmt: skip
    wait_state(broker, "hb-cdc", "RUNNING")
    wait_state(broker, "quiet-cdc", "RUNNING")

    def grows(table: str) -> list:
        first = pgdb.one(f"SELECT count(*) FROM {table}")[0]

        def probe():
            n = pgdb.one(f"SELECT count(*) FROM {table}")[0]
            assert n >= first + 4, f"{table}: {n} rows, {first} at first"
            return n

        wait_until(probe, timeout=WAIT, interval=0.2, what=f"{table} gaining rows")
        stamps = [r[0] for r in pgdb.conn.execute(f"SELECT ts FROM {table} ORDER BY id").fetchall()]
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
        assert gaps and min(gaps) >= 0.3, f"{table}: rows {gaps} s apart, want about 0.5"
        return stamps

    grows("hb")
    grows("hb_quiet")

    # hb is captured: its rows arrive as inserts, in order, with nothing else.
    n = pgdb.one("SELECT max(id) FROM hb")[0]
    got = records(broker.bootstrap, topic("hba", "hb"), n)
    ids = [v["payload"]["after"]["id"] for _, v in got]
    assert ops(got) == ["c"] * len(got) and ids == list(range(1, len(got) + 1)), got
    assert {k["payload"]["id"] for k, _ in got} == set(ids)
    # hb_quiet is not captured: no topic, and the quiet connector's heartbeats move on.
    beats = records(broker.bootstrap, "__debezium-heartbeat.hbq", 2)
    assert all(k["payload"] == {"serverName": "hbq"} for k, _ in beats), beats
    assert topic("hbq", "hb_quiet") not in list_topic_names(broker.bootstrap)
    assert [v["payload"]["after"] for _, v in records(broker.bootstrap, topic("hbq", "data"), 1)] == [{"id": 1}]
    wait_state(broker, "hb-cdc", "RUNNING")
    wait_state(broker, "quiet-cdc", "RUNNING")


# ---------------------------------------------------------------------------
# 6. database.initial.statements
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_database_initial_statements(pgdb, start_broker, tmp_path):
    """`database.initial.statements` = `SET application_name = '<app>';INSERT INTO boot ...
    ('a;;b', current_setting('application_name'))`: each connection the connector opens runs
    both, in order (the row says `a;b` and the application name); a session with that
    application_name is in pg_stat_activity while the connector runs and gone once it is
    deleted; boot's rows reach the topic (snapshot or stream) exactly once each. A statement
    that fails fails the task, the trace quoting it."""
    app = "weir-initial-" + secrets.token_hex(3)
    pgdb.run("CREATE TABLE boot (id serial PRIMARY KEY, note text NOT NULL, app text)")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    statements = (f"SET application_name = '{app}';"
                  "INSERT INTO boot (note, app) VALUES ('a;;b', current_setting('application_name'))")  # fmt: skip
    create(broker, "init-cdc", connector_config(pgdb, "init", **{"database.initial.statements": statements}))
    wait_state(broker, "init-cdc", "RUNNING")

    def sessions() -> list:
        return pgdb.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s", (app, pgdb.name)
        ).fetchall()

    wait_until(sessions, timeout=WAIT, interval=0.2, what=f"a session named {app}")
    rows = pgdb.conn.execute("SELECT id, note, app FROM boot ORDER BY id").fetchall()
    assert rows and all(r[1:] == ("a;b", app) for r in rows), rows

    def all_rows_in_topic():
        got = records(broker.bootstrap, topic("init", "boot"), 1)
        table = pgdb.conn.execute("SELECT id, note, app FROM boot ORDER BY id").fetchall()
        seen = sorted(v["payload"]["after"]["id"] for _, v in got)
        assert seen == [r[0] for r in table], f"topic ids {seen}, table {table}"
        return got

    got = wait_until(all_rows_in_topic, timeout=WAIT, interval=0.3, what="boot's rows in the topic")
    fields = [col("id", "int32", False), col("note", "string", False), col("app", "string")]
    for k, v in got:
        p = envelope(v, pgdb, "init", "boot", fields)
        assert p["op"] in ("r", "c") and p["after"]["note"] == "a;b" and p["after"]["app"] == app, p
        check_key(k, "init", "boot", KEY_ID, {"id": p["after"]["id"]})

    bad = f"SELECT no_such_column_{secrets.token_hex(3)} FROM boot"
    create(broker, "bad-init", connector_config(pgdb, "initbad", **{
        "database.initial.statements": f"SET application_name = '{app}-bad';{bad}"}))  # fmt: skip
    failed_with(broker, "bad-init", "database.initial.statements", bad)
    wait_state(broker, "init-cdc", "RUNNING")
    assert sessions(), f"the running connector's session {app} is still there"


@pytest.mark.timeout(120)
def test_database_initial_statements_stay_with_their_connector(pgdb, start_broker, tmp_path):
    """Debezium runs `database.initial.statements` on connections of its own, closed when its
    task stops, so what they set reaches no other connector. Connector A sets
    `application_name`; once A is deleted, connector B on the same database (no initial
    statements), whose `heartbeat.action.query` records `current_setting('application_name')`,
    never sees A's name, and no session with A's name is left in pg_stat_activity."""
    app = "weir-a-" + secrets.token_hex(3)
    pgdb.run(
        "CREATE TABLE seen (id serial PRIMARY KEY, app text)",
        "CREATE TABLE t (id int4 PRIMARY KEY)",
        "INSERT INTO t VALUES (1)",
    )
    broker = start_connect(start_broker, tmp_path)
    create(broker, "a-cdc", connector_config(pgdb, "a", **{
        "table.include.list": r"public\.t",
        "database.initial.statements": f"SET application_name = '{app}'"}))  # fmt: skip
    wait_state(broker, "a-cdc", "RUNNING")
    assert ops(records(broker.bootstrap, topic("a", "t"), 1)) == ["r"]  # the snapshot is done

    def sessions() -> list:
        return pgdb.conn.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s AND datname = %s", (app, pgdb.name)
        ).fetchall()

    wait_until(sessions, timeout=WAIT, interval=0.2, what=f"a session named {app}")
    call(broker, "DELETE", "/connectors/a-cdc", status=204)
    wait_until(lambda: get(broker, "/connectors") == [], timeout=WAIT, interval=0.2, what="a-cdc deleted")

    create(broker, "b-cdc", connector_config(pgdb, "b", **{
        "table.include.list": r"public\.t", "heartbeat.interval.ms": "500",
        "heartbeat.action.query": "INSERT INTO seen (app) VALUES (current_setting('application_name'))"}))  # fmt: skip
    wait_state(broker, "b-cdc", "RUNNING")
    wait_until(lambda: pgdb.one("SELECT count(*) FROM seen")[0] >= 3, timeout=WAIT, interval=0.2,
               what="B's heartbeat action query running")  # fmt: skip
    apps = [r[0] for r in pgdb.conn.execute("SELECT app FROM seen ORDER BY id").fetchall()]

    def none_left():
        left = sessions()
        assert not left and app not in apps, (
            f"sessions still named {app} after A was deleted: {left}; application_name B's heartbeat "
            f"action query saw: {apps}"
        )
        return True

    wait_until(none_left, timeout=10, interval=0.2, what=f"no session of A's ({app}) left, none lent to B")


# ---------------------------------------------------------------------------
# 7. Debezium 1.x names
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_table_whitelist_is_table_include_list(pgdb, start_broker, tmp_path):
    """`table.whitelist=public\\.wanted` captures `wanted` only (snapshot and stream; `unwanted`
    gets no topic). The validate endpoint accepts it alone and refuses it next to
    `table.include.list`, naming `table.whitelist` (likewise `table.blacklist` with
    `table.exclude.list` and `column.whitelist` with `column.include.list`); creating such a
    connector is refused with 400 naming the key."""
    pgdb.run(
        "CREATE TABLE wanted (id int4 PRIMARY KEY, v text)",
        "CREATE TABLE unwanted (id int4 PRIMARY KEY, v text)",
        "INSERT INTO wanted VALUES (1, 'w1')",
        "INSERT INTO unwanted VALUES (1, 'u1')",
    )
    broker = start_connect(start_broker, tmp_path)
    base = connector_config(pgdb, "wl")

    def errors(config: dict) -> dict:
        _, payload = call(broker, "PUT", f"/connector-plugins/{base['connector.class']}/config/validate", config,
                          status=200)  # fmt: skip
        found = {c["value"]["name"]: c["value"]["errors"] for c in payload["configs"] if c["value"]["errors"]}
        assert payload["error_count"] == sum(len(e) for e in found.values()), payload
        return found

    assert errors({**base, "table.whitelist": r"public\.wanted"}) == {}
    found = errors({**base, "table.whitelist": r"public\.wanted", "table.include.list": r"public\.wanted"})
    assert list(found) == ["table.whitelist"], found
    assert "table.include.list" in found["table.whitelist"][0], found
    found = errors({**base, "table.blacklist": r"public\.unwanted", "table.exclude.list": r"public\.unwanted"})
    assert list(found) == ["table.blacklist"] and "table.exclude.list" in found["table.blacklist"][0], found
    found = errors({**base, "column.whitelist": r"public\.wanted\.v", "column.include.list": r"public\.wanted\.v"})
    assert list(found) == ["column.whitelist"] and "column.include.list" in found["column.whitelist"][0], found
    both = {**base, "table.whitelist": r"public\.wanted", "table.include.list": r"public\.wanted"}
    _, payload = call(broker, "POST", "/connectors", {"name": "both", "config": both}, status=400)
    assert "table.whitelist" in payload["message"], payload
    assert get(broker, "/connectors") == []

    create(broker, "wl-cdc", {**base, "table.whitelist": r"public\.wanted"})
    wait_state(broker, "wl-cdc", "RUNNING")
    assert ops(records(broker.bootstrap, topic("wl", "wanted"), 1)) == ["r"]
    pgdb.tx("INSERT INTO unwanted VALUES (2, 'u2')")
    tx = pgdb.tx("INSERT INTO wanted VALUES (2, 'w2')")
    got = records(broker.bootstrap, topic("wl", "wanted"), 2)
    assert ops(got) == ["r", "c"], got
    fields = [col("id", "int32", False), col("v", "string")]
    for (k, v), row in zip(got, [{"id": 1, "v": "w1"}, {"id": 2, "v": "w2"}]):
        p = envelope(v, pgdb, "wl", "wanted", fields)
        check_key(k, "wl", "wanted", KEY_ID, {"id": row["id"]})
        assert p["after"] == row, p
    assert got[0][1]["payload"]["source"]["snapshot"] == "last"
    streamed(got[1][1]["payload"], tx)
    # The change to `unwanted` came first: had it been captured, it would be there by now.
    assert topic("wl", "unwanted") not in list_topic_names(broker.bootstrap)
    assert high(broker.bootstrap, topic("wl", "wanted")) == 2
