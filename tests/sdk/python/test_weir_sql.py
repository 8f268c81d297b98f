"""The Python SDK's SQL support (sdk/python/weir.py) under plain CPython: the rows layout
(wit/ROWS.md) and the changes layout (wit/CHANGES.md) read from buffers typed by hand from the
specs (every value type, nulls, empty results, key-only images, unchanged values; malformed
buffers refused with what is wrong), the helpers over the `sql` capability (stub/ stands in for
its bindings, over sqlite3), and the sql-source example driven as the runtime drives it.

    /var/cache/weir/venv/bin/python -m pytest tests/sdk/python
"""
import base64
import importlib.util
import json
import math
import os
import random
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import weir
from componentize_py_types import Err
from wit_world.imports import sql as host
from wit_world.imports import types as t

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


# --- Buffers by hand, from the specs --------------------------------------------------------

def u16(n):
    return struct.pack("<H", n)


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def short(s):
    b = s.encode() if isinstance(s, str) else s
    return u16(len(b)) + b


NULL, FALSE, TRUE, UNCHANGED = b"\x00", b"\x01", b"\x02", b"\x07"


def INT(i):
    return b"\x03" + struct.pack("<q", i)


def FLOAT(f):
    return b"\x04" + struct.pack("<d", f)


def TEXT(s):
    b = s.encode() if isinstance(s, str) else s
    return b"\x05" + u32(len(b)) + b


def BYTES(b):
    return b"\x06" + u32(len(b)) + b


def rows_buf(columns, rows, count=None):
    """WRS1, the columns (name, type), the row count, then each row's values (bytes) in order."""
    return (b"WRS1" + u32(len(columns)) + b"".join(short(n) + short(ty) for n, ty in columns)
            + u32(len(rows) if count is None else count) + b"".join(b"".join(r) for r in rows))


def relation(schema, table, columns):
    """columns: (name, type, type modifier, flags)."""
    return short(schema) + short(table) + u16(len(columns)) + b"".join(
        short(n) + short(ty) + struct.pack("<iB", mod, flags) for n, ty, mod, flags in columns)


def change(op, relations, before=None, after=None, lsn=0, commit_lsn=0, end_lsn=0, xid=0, commit_time=0, seq=0):
    """An image is None (absent), or (kind 1 or 2, [value bytes])."""
    out = op.encode() + struct.pack("<QQQIqI", lsn, commit_lsn, end_lsn, xid, commit_time, seq)
    out += u16(len(relations)) + b"".join(u32(r) for r in relations)
    for image in (before, after):
        out += b"\x00" if image is None else bytes([image[0]]) + b"".join(image[1])
    return out


def changes_buf(position, relations, changes, count=None):
    return (b"WRC1" + u64(position) + u32(len(relations)) + b"".join(relations)
            + u32(len(changes) if count is None else count) + b"".join(changes))


# --- Rows ------------------------------------------------------------------------------------

def test_a_rows_buffer_typed_in_hex_reads_and_is_written_byte_for_byte():
    golden = bytes.fromhex(
        "57525331" "02000000"              # WRS1, 2 columns
        "0200" "6964" "0700" "494e5445474552"  # id INTEGER
        "0100" "76" "0000"                 # v, no type name
        "02000000"                         # 2 rows
        "03" "0100000000000000" "05" "02000000" "c3a9"  # 1, "é"
        "00" "02")                         # null, true
    rows = weir.Rows(golden)
    assert rows.columns == (weir.Column("id", "INTEGER"), weir.Column("v", ""))
    assert rows.names == ("id", "v")
    assert list(rows) == [(1, "é"), (None, True)]
    assert weir.rows_buffer([(1, "é"), (None, True)], [("id", "INTEGER"), "v"]) == golden


def test_every_value_type_reads_as_its_python_value():
    values = [
        (NULL, None), (FALSE, False), (TRUE, True),
        (INT(0), 0), (INT(-1), -1), (INT(2 ** 63 - 1), 2 ** 63 - 1), (INT(-2 ** 63), -2 ** 63),
        (FLOAT(0.1), 0.1), (FLOAT(-0.0), -0.0), (FLOAT(1e300), 1e300), (FLOAT(math.inf), math.inf),
        (TEXT(""), ""), (TEXT("plain"), "plain"), (TEXT("é日本🦀"), "é日本🦀"), (TEXT("a\0b"), "a\0b"),
        (BYTES(b""), b""), (BYTES(b"\x00\x01\xff"), b"\x00\x01\xff"),
    ]
    buf = rows_buf([("v", "ANY")], [[v] for v, _ in values])
    rows = weir.Rows(buf)
    assert len(rows) == len(values)
    got = [r[0] for r in rows]
    assert got == [p for _, p in values]
    assert [type(g) for g in got] == [type(p) for _, p in values]  # False is no 0, True no 1
    assert math.copysign(1, got[8]) == -1.0
    nan = weir.Rows(rows_buf([("f", "")], [[FLOAT(math.nan)]]))[0][0]
    assert math.isnan(nan)
    # Any bytes-like input.
    assert list(weir.Rows(bytearray(buf))) == list(weir.Rows(memoryview(buf))) == list(rows)


def test_rows_are_tuples_by_index_iteration_and_dicts():
    buf = rows_buf([("id", "INT8"), ("name", "TEXT"), ("photo", "BYTEA")],
                   [[INT(1), TEXT("ada"), NULL], [INT(2), NULL, BYTES(b"\x01")], [INT(3), TEXT(""), BYTES(b"")]])
    rows = weir.Rows(buf)
    assert len(rows) == 3
    assert rows[0] == (1, "ada", None) and rows[-1] == (3, "", b"") and rows[1] == (2, None, b"\x01")
    with pytest.raises(IndexError):
        rows[3]
    assert list(rows) == [rows[0], rows[1], rows[2]]
    assert list(rows.dicts())[1] == {"id": 2, "name": None, "photo": b"\x01"}
    assert repr(rows) == "<weir.Rows (id INT8, name TEXT, photo BYTEA): 3 rows>"
    assert rows.buffer == buf


def test_empty_results_and_parameter_rows():
    empty = weir.Rows(rows_buf([("id", "INTEGER")], []))
    assert len(empty) == 0 and list(empty) == [] and empty.names == ("id",)
    nothing = weir.Rows(b"WRS1" + u32(0) + u32(0))  # what the host sends for a batch of no row
    assert len(nothing) == 0 and nothing.columns == () and list(nothing) == []
    assert weir.rows_buffer([]) == b"WRS1" + u32(0) + u32(0)
    # Parameter rows: unnamed columns.
    params = weir.rows_buffer([(1, "a", None), (2, b"b", 1.5), (True, False, bytearray(b"c"))])
    assert params == rows_buf([("", "")] * 3, [[INT(1), TEXT("a"), NULL], [INT(2), BYTES(b"b"), FLOAT(1.5)],
                                               [TRUE, FALSE, BYTES(b"c")]])
    assert list(weir.Rows(params)) == [(1, "a", None), (2, b"b", 1.5), (True, False, b"c")]


def test_rows_buffer_refuses_what_the_layout_cannot_carry():
    with pytest.raises(ValueError, match="row 1 has 1 values, not 2"):
        weir.rows_buffer([(1, 2), (3,)])
    with pytest.raises(ValueError, match=r"row 0, column 0: 9223372036854775808 is out of range"):
        weir.rows_buffer([(2 ** 63,)])
    with pytest.raises(TypeError, match=r"row 0, column 1: type dict is not a SQL value"):
        weir.rows_buffer([(1, {})])
    with pytest.raises(ValueError, match="2 rows of no columns"):
        weir.rows_buffer([(), ()])


def test_random_rows_round_trip():
    rng = random.Random(7)
    pool = [None, True, False, 0, -7, 2 ** 63 - 1, -2 ** 63, 0.5, -1e-300, "", "x", "é🦀" * 3, b"", b"\xff\x00"]
    for _ in range(200):
        width = rng.randint(1, 5)
        rows = [tuple(rng.choice(pool) for _ in range(width)) for _ in range(rng.randint(0, 20))]
        buf = weir.rows_buffer(rows, [(f"c{i}", "T") for i in range(width)])
        assert list(weir.Rows(buf)) == rows


BASE_COLUMNS = [("id", "INT8"), ("name", "TEXT")]


@pytest.mark.parametrize("buf, message", [
    (b"", "not a rows buffer (no WRS1 magic"),
    (b"WRB1" + bytes(8), "not a rows buffer (no WRS1 magic at its start: b'WRB1')"),
    (b"WRS1" + bytes(7), "rows buffer of 11 bytes, shorter than the 12 bytes"),
    (b"WRS1" + u32(1000) + u32(0), "column count 1000 is more than the buffer can hold"),
    (b"WRS1" + u32(1) + u16(10) + b"ab", "column 0: name (10 bytes) runs past the end of the buffer"),
    (b"WRS1" + u32(1) + short(b"\xff") + short("") + u32(0), "column 0: name is not UTF-8 (invalid start byte at byte 0)"),
    (b"WRS1" + u32(2) + short("a") + short("") + short("b") + short(b"\xc3") + u32(0),
     "column 1: type name is not UTF-8 (unexpected end of data at byte 0)"),
    (b"WRS1" + u32(1) + short("a") + short("b"), "row count runs past the end of the buffer"),
    (b"WRS1" + u32(0) + u32(2) + b"\0\0", "2 rows of no columns"),
    (rows_buf([("a", "")], [[NULL], [NULL]], count=5), "row count 5 is more than the buffer can hold"),
    (rows_buf(BASE_COLUMNS, [[INT(1), b"\x09"]]), "row 0, column 1 (name): unknown value tag 9"),
    (rows_buf(BASE_COLUMNS, [[INT(1), UNCHANGED]]), "row 0, column 1 (name): unknown value tag 7"),
    (rows_buf(BASE_COLUMNS, [[INT(1), NULL], [INT(2), TEXT(b"a\xffb")]]),
     "row 1, column 1 (name): text is not UTF-8 (invalid start byte at byte 1)"),
    (rows_buf(BASE_COLUMNS, [[b"\x03\x01\x02\x03", NULL]]), "row 0, column 0 (id): integer runs past the end"),
    (rows_buf(BASE_COLUMNS, [[NULL, b"\x04\x00"]]), "row 0, column 1 (name): float runs past the end"),
    (rows_buf(BASE_COLUMNS, [[NULL, b"\x05\x01\x00"]]), "row 0, column 1 (name): text length runs past the end"),
    (rows_buf(BASE_COLUMNS, [[NULL, b"\x05" + u32(10) + b"abc"]]),
     "row 0, column 1 (name): text (10 bytes) runs past the end of the buffer (3 left)"),
    (rows_buf(BASE_COLUMNS, [[NULL, b"\x06" + u32(4) + b"ab"]]), "row 0, column 1 (name): bytes (4 bytes) runs past"),
    (rows_buf(BASE_COLUMNS, [[INT(1), NULL], [INT(2)]]), "row 1, column 1 (name): value tag runs past the end"),
    (rows_buf(BASE_COLUMNS, [[INT(1), TEXT("a")]]) + b"\x00", "1 bytes after the last row"),
    (rows_buf(BASE_COLUMNS, []) + b"xyz", "3 bytes after the last row"),
])
def test_malformed_rows_are_refused_with_what_is_wrong(buf, message):
    with pytest.raises(ValueError) as e:
        weir.Rows(buf)
    assert message in str(e.value), str(e.value)


def valid_rows():
    return rows_buf([("id", "INT8"), ("name", "TEXT"), ("f", "FLOAT8"), ("b", "BYTEA"), ("ok", "BOOL")],
                    [[INT(1), TEXT("é"), FLOAT(0.5), BYTES(b"\x00"), TRUE], [NULL, NULL, NULL, NULL, FALSE]])


def test_every_truncation_of_a_rows_buffer_is_refused():
    buf = valid_rows()
    weir.Rows(buf)
    for n in range(len(buf)):
        with pytest.raises(ValueError):
            weir.Rows(buf[:n])


@pytest.mark.parametrize("seed", range(5))
def test_no_bytes_break_the_rows_reader(seed):
    """Random bytes after the magic, and random changes to a valid buffer: a Rows or a
    ValueError, never another exception."""
    rng = random.Random(seed)
    good = valid_rows()
    for i in range(400):
        if i % 2:
            buf = b"WRS1" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
        else:
            buf = bytearray(good)
            for _ in range(rng.randint(1, 3)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            buf = bytes(buf)
        try:
            rows = weir.Rows(buf)
        except ValueError:
            continue
        for r in rows:
            assert len(r) == len(rows.columns)


# --- Changes ---------------------------------------------------------------------------------

ITEMS = relation("public", "items", [("id", "INT4", -1, 1), ("doc", "TEXT", -1, 0)])
OTHER = relation("s", "other", [("id", "INT4", -1, 1)])


def rust_round_trip_buffer():
    """The buffer runtime/sqlbuf's `changes_round_trip` test builds, byte for byte."""
    up = change("u", [0], before=(1, [INT(1), NULL]), after=(2, [INT(2), UNCHANGED]),
                lsn=10, commit_lsn=20, end_lsn=0, xid=7, commit_time=-5, seq=0)
    tr = change("t", [0, 1], lsn=10, commit_lsn=20, end_lsn=30, xid=7, commit_time=-5, seq=1)
    return changes_buf(30, [ITEMS, OTHER], [up, tr])


def test_the_rust_reference_buffer_reads_as_its_changes():
    c = weir.Changes(rust_round_trip_buffer())
    assert c.position == 30 and len(c) == 2 and len(c.relations) == 2
    items = c.relations[0]
    assert items == weir.Relation("public", "items", (weir.ChangeColumn("id", "INT4", -1, True),
                                                      weir.ChangeColumn("doc", "TEXT", -1, False)))
    assert items.names == ("id", "doc") and items.key == ("id",)
    assert c.relations[1].table == "other"
    up, tr = c
    assert (up.op, up.lsn, up.commit_lsn, up.end_lsn, up.xid, up.commit_time_us, up.seq) == ("u", 10, 20, 0, 7, -5, 0)
    assert up.relation is items and up.relations == (items,)
    assert up.before.kind == weir.Image.KEY == "key" and up.before.values == (1, None)
    assert up.after.kind == "full" and up.after[0] == 2 and up.after["doc"] is weir.UNCHANGED
    assert up.after.as_dict() == {"id": 2, "doc": weir.UNCHANGED}
    assert tr.op == weir.TRUNCATE and tr.relations == (items, c.relations[1]) and tr.end_lsn == 30 and tr.seq == 1
    assert tr.before is None and tr.after is None


def test_inserts_updates_deletes_and_every_value_in_images():
    table = relation("public", "t", [("id", "INT8", -1, 1), ("b", "BOOL", -1, 0), ("f", "FLOAT8", -1, 0),
                                     ("n", "NUMERIC", 655366, 0), ("x", "BYTEA", -1, 0), ("big", "TEXT", -1, 2)])
    full = [INT(1), TRUE, FLOAT(2.5), TEXT("-12345.678"), BYTES(b"\x00\xff"), TEXT("long text")]
    changes = [
        change("c", [0], after=(2, full), lsn=100, commit_lsn=120, xid=9, commit_time=1700000000000000),
        change("u", [0], after=(2, [INT(1), FALSE, NULL, TEXT("NaN"), BYTES(b""), UNCHANGED]),
               lsn=110, commit_lsn=120, xid=9, seq=1),
        change("d", [0], before=(1, [INT(1), NULL, NULL, NULL, NULL, NULL]),
               lsn=115, commit_lsn=120, end_lsn=121, xid=9, seq=2),
    ]
    c = weir.Changes(changes_buf(121, [table], changes))
    assert [x.op for x in c] == [weir.INSERT, weir.UPDATE, weir.DELETE] == ["c", "u", "d"]
    ins, upd, dele = c
    assert ins.before is None and ins.after.as_dict() == {
        "id": 1, "b": True, "f": 2.5, "n": "-12345.678", "x": b"\x00\xff", "big": "long text"}
    assert ins.commit_time_us == 1700000000000000 and ins.end_lsn == 0
    assert c.relations[0].columns[3].type_modifier == 655366
    # Flags: only bit 0 says "key".
    assert c.relations[0].key == ("id",) and c.relations[0].columns[5].key is False
    assert upd.before is None and upd.after.get("big") is weir.UNCHANGED and upd.after.get("nope", 5) == 5
    assert upd.after["f"] is None and upd.after["b"] is False
    with pytest.raises(KeyError):
        upd.after["nope"]
    assert dele.after is None and dele.before.kind == "key" and dele.before.values == (1, None, None, None, None, None)
    assert dele.end_lsn == 121 and [x.seq for x in c] == [0, 1, 2] and {x.xid for x in c} == {9}
    assert repr(weir.UNCHANGED) == "weir.UNCHANGED"
    assert "lsn=115" in repr(dele) and repr(c) == "<weir.Changes of 3 changes on 1 tables, position 121>"


def test_a_batch_with_no_change_still_moves_the_position():
    c = weir.Changes(changes_buf(2 ** 64 - 1, [], []))
    assert c.position == 2 ** 64 - 1 and len(c) == 0 and c.relations == [] and list(c) == []
    # A truncate of no table is no error, nor a relation no change names.
    c = weir.Changes(changes_buf(5, [OTHER], [change("t", [])]))
    assert c[0].relation is None and c[0].relations == ()


CHANGE_OK = change("c", [0], after=(2, [INT(1), TEXT("a")]))


@pytest.mark.parametrize("buf, message", [
    (b"", "not a changes buffer (no WRC1 magic"),
    (b"WRS1" + bytes(16), "not a changes buffer (no WRC1 magic at its start: b'WRS1')"),
    (b"WRC1" + bytes(15), "changes buffer of 19 bytes, shorter than the 20 bytes"),
    (b"WRC1" + u64(0) + u32(100) + u32(0), "relation count 100 is more than the buffer can hold"),
    (b"WRC1" + u64(0) + u32(1) + u16(50) + b"x" + u32(0), "relation 0: schema (50 bytes) runs past the end"),
    (changes_buf(0, [short("s") + short(b"\xfe") + u16(0)], []), "relation 0: table is not UTF-8"),
    (changes_buf(0, [ITEMS, short("s") + short("t") + u16(1) + short(b"\xff") + short("T") + bytes(5)], []),
     "relation 1: column 0: name is not UTF-8"),
    (b"WRC1" + u64(0) + u32(1) + short("s") + short("t") + u16(1) + short("a") + short("b") + b"\x01\x02",
     "relation 0: column 0: type modifier and flags run past the end"),
    (b"WRC1" + u64(0) + u32(1) + short("s") + short("t") + u16(2) + short("a") + short("b") + bytes(5) + bytes(4),
     "relation 0: column 1: type modifier and flags run past the end of the buffer"),
    (b"WRC1" + u64(0) + u32(1) + short("s") + short("t") + u16(0), "change count runs past the end of the buffer"),
    (changes_buf(0, [ITEMS], [CHANGE_OK], count=3), "change count 3 is more than the buffer can hold"),
    (changes_buf(0, [ITEMS], [b"x" + CHANGE_OK[1:]]), "change 0: unknown op 120 (not 'c', 'u', 'd', 't')"),
    (changes_buf(0, [ITEMS], [CHANGE_OK, change("c", [0], after=(2, [TEXT("x" * 60), NULL])), CHANGE_OK[:30]]),
     "change 2: commit time runs past the end of the buffer"),
    (changes_buf(0, [ITEMS], [change("c", [5], after=(2, [NULL, NULL]))]),
     "change 0: relation index 5 out of range (the batch describes 1)"),
    (changes_buf(0, [ITEMS, OTHER], [change("c", [0, 1], after=(2, [NULL, NULL]))]),
     "change 0: an insert names 2 tables, not one"),
    (changes_buf(0, [ITEMS], [change("d", [])]), "change 0: a delete names 0 tables, not one"),
    (changes_buf(0, [ITEMS], [CHANGE_OK[:43] + u32(0) + b"\x03" + b"\x00"]),
     "change 0: before image: unknown image kind 3 (0 absent, 1 key, 2 full)"),
    (changes_buf(0, [ITEMS], [change("c", [0], after=(2, [INT(1), b"\x08"]))]),
     "change 0: after image, column 1 (doc): unknown value tag 8"),
    (changes_buf(0, [ITEMS], [change("u", [0], before=(1, [INT(1), TEXT(b"\xc3(")]), after=(2, [INT(1), NULL]))]),
     "change 0: before image, column 1 (doc): text is not UTF-8 (invalid continuation byte at byte 0)"),
    (changes_buf(0, [ITEMS], [CHANGE_OK]) + b"\x00", "1 bytes after the last change"),
])
def test_malformed_changes_are_refused_with_what_is_wrong(buf, message):
    with pytest.raises(ValueError) as e:
        weir.Changes(buf)
    assert message in str(e.value), str(e.value)


def test_every_truncation_of_a_changes_buffer_is_refused():
    buf = rust_round_trip_buffer()
    for n in range(len(buf)):
        with pytest.raises(ValueError):
            weir.Changes(buf[:n])
    # An image with fewer values than its table has columns.
    with pytest.raises(ValueError, match=r"change 0: after image, column 1 \(doc\): value tag runs past"):
        weir.Changes(changes_buf(0, [ITEMS], [change("c", [0], after=(2, [INT(1)]))]))


@pytest.mark.parametrize("seed", range(5))
def test_no_bytes_break_the_changes_reader(seed):
    rng = random.Random(seed)
    good = rust_round_trip_buffer()
    for i in range(400):
        if i % 2:
            buf = b"WRC1" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
        else:
            buf = bytearray(good)
            for _ in range(rng.randint(1, 3)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            buf = bytes(buf)
        try:
            changes = weir.Changes(buf)
        except ValueError:
            continue
        for c in changes:
            for image in (c.before, c.after):
                if image is not None:
                    assert len(image) == len(c.relation.columns) and image.as_dict() is not None


# --- The capability, over the stub's sqlite3 --------------------------------------------------

@pytest.fixture
def db(tmp_path):
    """A SQLite file granted as `db`, with a table of every storage class."""
    host.reset()
    path = tmp_path / "app.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, photo BLOB, note TEXT)")
    c.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                  [(1, "ada", 1.5, b"\x00\xff", None), (2, "bob", None, None, "x"), (3, "é", -0.25, b"", "")])
    host.GRANTS["db"] = str(path)
    yield c
    c.close()
    host.reset()


def test_connect_query_and_execute(db):
    conn = weir.sql.connect("db")
    assert isinstance(conn, weir.SqlConnection) and conn.dialect == "sqlite" and conn.name == "db"
    q = conn.query("SELECT id, name, price, photo, note FROM items ORDER BY id")
    assert q.names == ("id", "name", "price", "photo", "note")
    assert list(q) == [(1, "ada", 1.5, b"\x00\xff", None), (2, "bob", None, None, "x"), (3, "é", -0.25, b"", "")]
    assert conn.execute("UPDATE items SET note = ? WHERE id > ?", ("n", 1)) == 2
    assert conn.query_one("SELECT count(*) FROM items WHERE note = ?", ("n",)) == (2,)
    assert conn.query_one("SELECT id FROM items WHERE id > 100") is None
    assert list(conn.query("SELECT id, note FROM items WHERE id = ?", [1]).dicts()) == [{"id": 1, "note": None}]
    assert conn.query("SELECT id FROM items ORDER BY id").all() == [(1,), (2,), (3,)]
    conn.close()
    conn.close()  # once is enough: the handle is dropped once
    assert not host.LIVE


def test_a_query_reads_in_batches_as_asked_and_frees_the_connection(db):
    db.executemany("INSERT INTO items (id) VALUES (?)", [(i,) for i in range(10, 20)])
    conn = weir.sql.connect("db")
    q = conn.query("SELECT id FROM items ORDER BY id", batch=4)
    sizes = [len(rows) for rows in q.batches()]
    assert sizes == [4, 4, 4, 1] and host.ASKED == [4] * 5  # the last next says "no more"
    assert len(host.LIVE) == 1, "the cursor was dropped at the end"
    # A query not read to its end holds the connection until it is closed.
    q = conn.query("SELECT id FROM items ORDER BY id", batch=2)
    assert next(iter(q)) == (1,)
    with pytest.raises(weir.SqlStatementFailed, match="a cursor of this connection is still open"):
        conn.execute("DELETE FROM items")
    q.close()
    with conn.query("SELECT id FROM items", batch=1) as q:
        assert q.columns == (weir.Column("id", ""),)
    assert conn.execute("DELETE FROM items WHERE id >= 10") == 10
    # An empty result: no batch at all, hence no columns.
    q = conn.query("SELECT id, name FROM items WHERE id < 0")
    assert q.columns == () and list(q) == [] and len(host.LIVE) == 1
    with pytest.raises(ValueError, match="batch: 0"):
        conn.query("SELECT 1", batch=0)


def test_parameters_are_typed_values(db):
    conn = weir.sql.connect("db")
    conn.execute("CREATE TABLE p (a, b, c, d, e, f, g)")
    conn.execute("INSERT INTO p VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (None, True, -(2 ** 63), 0.5, "é", b"\x00", bytearray(b"z")))
    assert conn.query_one("SELECT a, b, c, d, e, f, g FROM p") == (None, 1, -(2 ** 63), 0.5, "é", b"\x00", b"z")
    assert [weir.sql.param(v) for v in (None, False, 3, 2.0, "s", b"b")] == [
        host.Value_Null(), host.Value_Boolean(False), host.Value_Int(3), host.Value_Float(2.0),
        host.Value_Text("s"), host.Value_Bytes(b"b")]
    assert weir.sql.param(host.Value_Int(4)) == host.Value_Int(4)
    with pytest.raises(ValueError, match="parameter 2: 9223372036854775808 is out of range"):
        conn.execute("SELECT ?, ?", (1, 2 ** 63))
    with pytest.raises(TypeError, match="parameter 1: type object is not a SQL value"):
        conn.execute("SELECT ?", (object(),))
    with pytest.raises(TypeError, match="params is a sequence"):
        conn.execute("SELECT ?", "abc")
    assert conn.execute_many("INSERT INTO p (a, b) VALUES (?, ?)", [(1, "x"), (2, None), (3, b"y")]) == 3
    assert conn.execute_many("INSERT INTO p (a) VALUES (?)", weir.rows_buffer([(9,)])) == 1
    assert conn.query("SELECT a, b FROM p WHERE a > 0 ORDER BY a").all() == [(1, "x"), (2, None), (3, b"y"), (9, None)]


def test_host_errors_are_sql_errors_that_map_onto_the_contract(db, monkeypatch):
    with pytest.raises(weir.SqlDenied) as e:
        weir.sql.connect("other")
    assert isinstance(e.value, weir.Fatal) and e.value.message.startswith('no SQL connection named "other"')
    assert str(e.value).startswith("denied: no SQL connection")
    conn = weir.sql.connect("db")
    with pytest.raises(weir.sql.StatementFailed) as e:
        conn.query("SELEC 1")
    assert "syntax error" in e.value.message and isinstance(e.value, weir.Fatal)

    def lost(self, max_rows):
        raise Err(host.SqlError_Unavailable("the connection was lost"))

    monkeypatch.setattr(host.Cursor, "next", lost)
    q = conn.query("SELECT 1")
    with pytest.raises(weir.SqlUnavailable) as e:
        list(q)
    assert isinstance(e.value, weir.Retriable) and len(host.LIVE) == 1, "the cursor is dropped after a failure"

    class Poller(weir.Source):
        def poll(self, max_records):
            weir.sql.connect("db").query("SELECT 1").all()

    S = weir.source(Poller)
    S().open([], [])
    with pytest.raises(Err) as e:
        S().poll(1)
    assert e.value.value == t.Error_Retriable("unavailable: the connection was lost")


def test_transactions_commit_or_roll_back(db):
    conn = weir.sql.connect("db")
    with conn.transaction("immediate"):
        conn.execute("DELETE FROM items WHERE id = 1")
    with pytest.raises(KeyError):
        with conn.transaction():
            conn.execute("DELETE FROM items")
            raise KeyError("boom")
    assert conn.query("SELECT id FROM items ORDER BY id").all() == [(2,), (3,)]
    with pytest.raises(ValueError, match="begin: 'serializable'"):
        conn.begin("serializable")
    conn.begin("snapshot")
    with pytest.raises(weir.SqlStatementFailed, match="already open"):
        conn.begin()
    conn.rollback()
    with pytest.raises(weir.SqlStatementFailed, match="only on PostgreSQL"):
        conn.begin_at_snapshot("00000003-00000002-1")


def test_a_change_stream_gives_changes_and_confirms(db):
    first = rust_round_trip_buffer()
    host.STREAMS["pg"] = [first, Err(host.SqlError_Unavailable("replication connection lost"))]
    with weir.sql.stream("pg", slot="s1", publication="p1", tables="public.items, s.other") as stream:
        name, options = host.STREAM_OPTIONS[0]
        assert name == "pg" and options == host.StreamOptions("s1", "p1", ["public.items", "s.other"], True)
        assert stream.exported_snapshot() == "00000003-00000002-1"
        batch = stream.next(100, 10)
        assert isinstance(batch, weir.Changes) and [c.op for c in batch] == ["u", "t"]
        stream.confirm(batch[-1].end_lsn)
        with pytest.raises(weir.SqlUnavailable, match="replication connection lost"):
            stream.next()
        assert len(stream.next()) == 0
    assert host.CONFIRMED == [30] and not host.LIVE
    with pytest.raises(weir.SqlDenied):
        weir.sql.stream("nope", "s", "p")


def test_the_namespace_names_everything():
    s = weir.sql
    assert (s.Rows, s.Changes, s.Image, s.UNCHANGED, s.Error, s.Unavailable) == (
        weir.Rows, weir.Changes, weir.Image, weir.UNCHANGED, weir.SqlError, weir.SqlUnavailable)
    assert issubclass(s.Unavailable, weir.Retriable) and issubclass(s.Denied, weir.Fatal)
    assert issubclass(s.StatementFailed, weir.Fatal) and issubclass(s.Error, weir.Error)


# --- The sql-source example --------------------------------------------------------------------

def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}",
                                                  ROOT / "examples" / "python" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFIG = [("table", "items"), ("column", "id"), ("topic", "rows"), ("poll.interval.ms", "0")]
PARTITION = b'{"table":"items"}'


def item(i, name, price, photo, note):
    return {"id": i, "name": name, "price": price, "photo": None if photo is None else base64.b64encode(photo).decode(),
            "note": note}


def poll(S, n):
    out = []
    batch = weir.Batch(S().poll(n))
    for r in batch:
        assert (r.topic, r.source_partition) == ("rows", PARTITION)
        assert json.loads(r.source_offset) == {"incrementing": json.loads(r.key)["id"]}
        out.append(json.loads(r.value))
    if len(batch):
        S().ack([(batch[-1].source_partition, batch[-1].source_offset)])
    return out


def test_example_sql_source_reads_new_rows_and_resumes(db, host_log):
    S = example("sql-source").Source
    d = S().describe()
    assert d.kind == t.PluginKind.SOURCE and d.name == "sql-source"
    assert [k.name for k in d.config] == ["table", "column", "topic", "connection", "poll.interval.ms",
                                          "weir.value.format", "weir.key.format"]
    S().open(CONFIG, [])
    assert poll(S, 2) == [item(1, "ada", 1.5, b"\x00\xff", None), item(2, "bob", None, None, "x")]
    assert poll(S, 2) == [item(3, "é", -0.25, b"", "")]
    assert poll(S, 2) == []
    assert len(host.LIVE) == 1, "every poll's cursor was dropped"
    db.execute("INSERT INTO items VALUES (7, 'new', 1e300, NULL, NULL)")
    db.execute("INSERT INTO items VALUES (5, 'late', NULL, NULL, NULL)")  # below 7, but above 3
    assert poll(S, 10) == [item(5, "late", None, None, None), item(7, "new", 1e300, None, None)]
    messages = [m for _, m in host_log]
    assert messages[0] == "reading items by id after the start"
    assert messages[1] == "columns: id, name, price, photo, note"  # the stub's rows carry no type names
    assert 'stored items up to {"incrementing":7}' in messages
    S().close()
    assert not host.LIVE

    # Resumed after the committed offset, however the runtime spelled its JSON.
    S().open(CONFIG, [(b'{"table": "other"}', b'{"incrementing": 99}'), (b'{"table": "items"}', b'{"incrementing": 3}')])
    assert [r["id"] for r in poll(S, 10)] == [5, 7]
    S().open(CONFIG, [(PARTITION, b'"nonsense"')])
    assert [r["id"] for r in poll(S, 10)] == [1, 2, 3, 5, 7]
    assert any("ignoring the committed offset" in m for _, m in host_log)


def test_example_sql_source_waits_after_an_empty_poll(db, monkeypatch):
    S = example("sql-source").Source
    S().open([*CONFIG[:3], ("poll.interval.ms", "5000")], [(PARTITION, b'{"incrementing":3}')])
    now = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    assert poll(S, 5) == []
    db.execute("INSERT INTO items (id, name) VALUES (4, 'd')")
    asked = len(host.ASKED)
    assert poll(S, 5) == [] and len(host.ASKED) == asked, "no query within the interval"
    now[0] += 5.0
    assert [r["id"] for r in poll(S, 5)] == [4]


def test_example_sql_source_checks_its_config(db):
    S = example("sql-source").Source

    def refused(config):
        with pytest.raises(Err) as e:
            S().open(config, [])
        return e.value.value

    assert S().validate([("table", "items; DROP TABLE items"), ("column", "id"), ("topic", "x")]) == [
        t.ConfigError("table", "'items; DROP TABLE items' is not a plain SQL identifier")]
    assert S().validate([("table", "main.items"), ("column", "a.b"), ("poll.interval.ms", "-1")]) == [
        t.ConfigError("column", "'a.b' is not a plain SQL identifier"),
        t.ConfigError("poll.interval.ms", "not a whole number of milliseconds")]
    e = refused([("table", "items"), ("column", "nope"), ("topic", "x")])
    assert isinstance(e, t.Error_InvalidConfig) and e.value.key == "column" and "no such column" in e.value.message
    e = refused([("table", "missing"), ("column", "id"), ("topic", "x")])
    assert isinstance(e, t.Error_InvalidConfig) and e.value.key == "table" and "no such table" in e.value.message
    e = refused([*CONFIG, ("connection", "elsewhere")])
    assert isinstance(e, t.Error_Fatal) and e.value.startswith('denied: no SQL connection named "elsewhere"')
    assert refused([("table", "items"), ("column", "id")]) == t.Error_InvalidConfig(t.ConfigError("topic", "required"))
    # A value of the column that is not an integer stops the task, naming it.
    db.execute("INSERT INTO items (id, name) VALUES (10, 'x')")
    db.execute("CREATE TABLE loose (n, v)")
    db.execute("INSERT INTO loose VALUES ('ten', 1)")
    S().open([("table", "loose"), ("column", "n"), ("topic", "x")], [])
    with pytest.raises(Err) as e:
        S().poll(5)
    assert e.value.value == t.Error_Fatal("loose.n holds 'ten', not an integer")


@pytest.fixture
def host_log(host):
    return host[0]


# --- The stub against the bindings componentize-py really generates ---------------------------

SQL_DUMP = r"""
import dataclasses, enum, inspect, json, sys
from wit_world.imports import sql
out = {}
for name, value in vars(sql).items():
    if name.startswith("_") or not isinstance(value, type) or value.__module__ != sql.__name__:
        continue
    if dataclasses.is_dataclass(value):
        out[name] = ["dataclass", [f.name for f in dataclasses.fields(value)]]
    elif issubclass(value, enum.Enum):
        out[name] = ["enum", [[m.name, m.value] for m in value]]
    else:
        out[name] = ["resource", sorted(
            [m, list(inspect.signature(getattr(value, m)).parameters) if not m.startswith("__") else []]
            for m in dir(value) if (not m.startswith("_") or m in ("__enter__", "__exit__"))
            and callable(getattr(value, m)))]
json.dump(out, sys.stdout)
"""


def test_sql_stub_matches_generated_bindings(tmp_path):
    from test_weir_sdk import componentize_py

    cpy = componentize_py()
    if cpy is None:
        pytest.skip("componentize-py is not installed")
    subprocess.run([cpy, "-d", str(ROOT / "wit"), "-w", "source-connector", "bindings", str(tmp_path)],
                   check=True, capture_output=True)

    def dump(path):
        r = subprocess.run([sys.executable, "-c", SQL_DUMP], env=dict(os.environ, PYTHONPATH=str(path)),
                           capture_output=True, text=True, check=True)
        return json.loads(r.stdout)

    generated = dump(tmp_path)
    assert generated["Connection"][0] == "resource" and "execute_many" in dict(generated["Connection"][1])
    assert dump(HERE / "stub") == generated
