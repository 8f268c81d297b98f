"""weir:connector/sql, as componentize-py 0.25 generates it, over Python's sqlite3 so that the
SDK's SQL helpers and the sql-source example run under plain CPython.

`GRANTS` maps a grant name to a SQLite file (the connector's `weir.sql.<name>.url`); a
connection behaves as the host's: busy while a cursor is open and not read to its end, a cursor
answers None once done (and at once for a result with no rows), errors are `Err(SqlError_*)`.
`STREAMS` maps a grant name to the changes buffers its stream's `next` returns in turn (then
an empty batch), `CONFIRMED` lists what was confirmed, `STREAM_OPTIONS` what streams were
opened with, `ASKED` the max-rows of every cursor `next`. `LIVE` holds the handles not yet
dropped. Dropping a handle twice fails as the generated code does (its finalizer is detached).

The rows encoder and decoder here follow wit/ROWS.md on their own (not weir.py's), so a test
that reads what this stub writes checks one against the other.
"""
import sqlite3
import struct
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Union

from componentize_py_types import Err

GRANTS = {}
STREAMS = {}
CONFIRMED = []
STREAM_OPTIONS = []
ASKED = []
LIVE = set()


def reset():
    for d in (GRANTS, STREAMS, LIVE):
        d.clear()
    for lst in (CONFIRMED, STREAM_OPTIONS, ASKED):
        lst.clear()


@dataclass
class Value_Null:
    pass


@dataclass
class Value_Boolean:
    value: bool


@dataclass
class Value_Int:
    value: int


@dataclass
class Value_Float:
    value: float


@dataclass
class Value_Text:
    value: str


@dataclass
class Value_Bytes:
    value: bytes


Value = Union[Value_Null, Value_Boolean, Value_Int, Value_Float, Value_Text, Value_Bytes]


@dataclass
class SqlError_Denied:
    value: str


@dataclass
class SqlError_Statement:
    value: str


@dataclass
class SqlError_Unavailable:
    value: str


SqlError = Union[SqlError_Denied, SqlError_Statement, SqlError_Unavailable]


class BeginKind(Enum):
    DEFAULT = 0
    IMMEDIATE = 1
    SNAPSHOT = 2


@dataclass
class StreamOptions:
    slot: str
    publication: str
    tables: List[str]
    create_slot: bool


def _short(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def encode_rows(columns, rows):
    """A rows buffer (wit/ROWS.md): columns as (name, type) pairs, rows of Python values."""
    out = [b"WRS1", struct.pack("<I", len(columns))]
    out += [_short(n) + _short(t) for n, t in columns]
    out.append(struct.pack("<I", len(rows)))
    for row in rows:
        for v in row:
            if v is None:
                out.append(b"\x00")
            elif v is False or v is True:
                out.append(b"\x02" if v else b"\x01")
            elif isinstance(v, int):
                out.append(b"\x03" + struct.pack("<q", v))
            elif isinstance(v, float):
                out.append(b"\x04" + struct.pack("<d", v))
            elif isinstance(v, str):
                b = v.encode()
                out.append(b"\x05" + struct.pack("<I", len(b)) + b)
            else:
                out.append(b"\x06" + struct.pack("<I", len(v)) + bytes(v))
    return b"".join(out)


def decode_params(buf):
    """The rows of a parameter rows buffer, as lists of Python values (trusting the buffer)."""
    assert buf[:4] == b"WRS1", buf[:4]
    (ncols,), at = struct.unpack_from("<I", buf, 4), 8
    for _ in range(2 * ncols):
        at += 2 + struct.unpack_from("<H", buf, at)[0]
    (nrows,), at = struct.unpack_from("<I", buf, at), at + 4
    rows = []
    for _ in range(nrows):
        row = []
        for _ in range(ncols):
            tag, at = buf[at], at + 1
            if tag in (0, 1, 2):
                row.append((None, False, True)[tag])
            elif tag in (3, 4):
                row.append(struct.unpack_from("<q" if tag == 3 else "<d", buf, at)[0])
                at += 8
            else:
                n = struct.unpack_from("<I", buf, at)[0]
                b = bytes(buf[at + 4:at + 4 + n])
                row.append(b.decode() if tag == 5 else b)
                at += 4 + n
        rows.append(row)
    assert at == len(buf)
    return rows


def _py(v):
    return None if isinstance(v, Value_Null) else v.value


def _statement(e):
    return Err(SqlError_Statement(str(e)))


class _Handle:
    def _live(self):
        LIVE.add(self)
        self._dropped = False

    def _drop(self):
        if self._dropped:  # the generated code: `(_, func, args, _) = self.finalizer.detach()`
            raise TypeError("cannot unpack non-iterable NoneType object")
        self._dropped = True
        LIVE.discard(self)

    def __enter__(self):
        return self

    def __hash__(self):
        return id(self)


class Cursor(_Handle):
    def __init__(self, conn, cur):
        self._live()
        self._conn, self._cur, self._done = conn, cur, False

    def next(self, max_rows: int) -> Optional[bytes]:
        ASKED.append(max_rows)
        if self._dropped:
            raise AssertionError("next on a dropped cursor")
        if self._done:
            return None
        try:
            rows = self._cur.fetchmany(max_rows)
        except sqlite3.Error as e:
            self._finish()
            raise _statement(e)
        if not rows:
            self._finish()
            return None
        columns = [(d[0], "") for d in self._cur.description]
        return encode_rows(columns, rows)

    def _finish(self):
        self._done = True
        if self._conn._cursor is self:
            self._conn._cursor = None

    def __exit__(self, *exc):
        self._drop()
        self._finish()


class Connection(_Handle):
    def __init__(self, name, db):
        self._live()
        self.name, self._db, self._cursor, self._txn = name, db, None, False

    @classmethod
    def open(cls, name: str) -> "Connection":
        if name not in GRANTS:
            raise Err(SqlError_Denied(f'no SQL connection named "{name}" is granted (granted: '
                                      f'{", ".join(sorted(GRANTS))})'))
        return cls(name, sqlite3.connect(GRANTS[name], isolation_level=None))

    def _free(self):
        if self._dropped:
            raise AssertionError("call on a dropped connection")
        if self._cursor is not None:
            raise Err(SqlError_Statement("a cursor of this connection is still open: read it to its "
                                         "end or drop it first"))

    def dialect(self) -> str:
        return "sqlite"

    def execute(self, statement: str, params: List[Value]) -> int:
        self._free()
        try:
            if params:
                cur = self._db.execute(statement, [_py(p) for p in params])
            else:
                try:
                    cur = self._db.execute(statement)
                except sqlite3.ProgrammingError:
                    cur = self._db.executescript(statement)
            return max(cur.rowcount, 0)
        except sqlite3.Error as e:
            raise _statement(e)

    def execute_many(self, statement: str, params: bytes) -> int:
        self._free()
        try:
            return sum(max(self._db.execute(statement, row).rowcount, 0) for row in decode_params(params))
        except sqlite3.Error as e:
            raise _statement(e)

    def query(self, statement: str, params: List[Value]) -> Cursor:
        self._free()
        try:
            cur = self._db.execute(statement, [_py(p) for p in params])
        except sqlite3.Error as e:
            raise _statement(e)
        self._cursor = Cursor(self, cur)
        return self._cursor

    def begin(self, kind: BeginKind) -> None:
        self._free()
        if self._txn:
            raise Err(SqlError_Statement("a transaction is already open"))
        self._db.execute("BEGIN IMMEDIATE" if kind == BeginKind.IMMEDIATE else "BEGIN")
        self._txn = True

    def begin_at_snapshot(self, snapshot: str) -> None:
        raise Err(SqlError_Statement("exported snapshots exist only on PostgreSQL"))

    def commit(self) -> None:
        self._free()
        if not self._txn:
            raise Err(SqlError_Statement("no transaction is open"))
        self._db.execute("COMMIT")
        self._txn = False

    def rollback(self) -> None:
        self._free()
        if not self._txn:
            raise Err(SqlError_Statement("no transaction is open"))
        self._db.execute("ROLLBACK")
        self._txn = False

    def __exit__(self, *exc):
        self._drop()
        self._db.close()


class ChangeStream(_Handle):
    def __init__(self, name, options):
        self._live()
        self.name, self.options, self._position = name, options, 0

    @classmethod
    def open(cls, name: str, options: StreamOptions) -> "ChangeStream":
        if name not in STREAMS:
            raise Err(SqlError_Denied(f'no SQL connection named "{name}" is granted'))
        STREAM_OPTIONS.append((name, options))
        return cls(name, options)

    def exported_snapshot(self) -> Optional[str]:
        return "00000003-00000002-1" if self.options.create_slot else None

    def next(self, max_changes: int, wait_ms: int) -> bytes:
        batches = STREAMS[self.name]
        if batches:
            b = batches.pop(0)
            if isinstance(b, Exception):
                raise b
            return b
        return b"WRC1" + struct.pack("<QII", self._position, 0, 0)

    def confirm(self, lsn: int) -> None:
        CONFIRMED.append(lsn)

    def __exit__(self, *exc):
        self._drop()
