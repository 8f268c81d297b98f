"""weir: Weir plugins (contract weir:connector@0.2.2) in Python, for componentize-py.

The model. A batch crosses the plugin boundary as one `bytes` in the Weir batch layout
(wit/BATCH.md). `Batch(buf)` checks the whole buffer once, then hands out `Record` views: a
view holds the buffer and its index and decodes a field only when it is read, so a field
nobody reads costs nothing. Assigning a field (or `add_header`) changes the record: the new
values live in the view, the buffer is never written. `Builder` writes a batch; `record(...)`
makes a new record, in no batch.

A plugin is a class; `transformer`, `source` and `sink` turn it into the class componentize-py
exports, which the app module binds to the interface's name:

    import weir

    class Upper(weir.Transform):
        name, version, description = "upper", "0.1.0", "Upper-cases values"

        def transform(self, record):      # -> the record, a new one, None (drop) or a list
            if record.value is not None:
                record.value = record.value.upper()
            return record

    Transformer = weir.transformer(Upper)

The SDK answers each batch with the cheapest output: `passthrough` when every record came back
unchanged and in order, `select` when records were only dropped, kept or reordered, a new batch
(`replace`) when something changed. Raise `BadRecord(index, message)`, `InvalidConfig(key,
message)`, `Retriable(message)` or `Fatal(message)` for the contract's errors; any other
exception traps, and the host reports its traceback. One instance of the class serves a task:
it is created at `open` and kept at module level (componentize-py may make a new export object
per call).

SQL (the `sql` capability, wit/sql.wit): `weir.sql.connect("db")` opens the connection the
config grants as `weir.sql.db.url`; its `query(...)` reads rows batch by batch, each batch one
buffer in the rows layout (wit/ROWS.md) that `Rows(buf)` checks and decodes into tuples of
Python values. `weir.sql.stream(...)` reads a database's change log, each batch one buffer in
the changes layout (wit/CHANGES.md) that `Changes(buf)` decodes into `Change`s with their
before and after `Image`s. Host failures are `SqlError`s (`SqlUnavailable` is retriable).
"""
from collections import namedtuple
from itertools import repeat
import json as _json
import struct

NULL = 0xFFFFFFFF  # the length of a null range
_HEAD = struct.Struct("<4sHHIHHIIIIII")  # header, 40 bytes
_ENTRY = struct.Struct("<qIIIIIIIIiIqIIII")  # record entry, 72 bytes: 16 values
_HENTRY = struct.Struct("<IIII")  # header entry, 16 bytes
_RANGE = struct.Struct("<II")
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")
_NUMBERS = (("timestamp", 0, _I64), ("partition", 40, _I32), ("offset", 48, _I64))
# Checked in this order, so that the first bad field is named: (offset in the entry, field,
# kind). The "headers" row reads (first, count), the "reserved" row (partition, reserved).
_RECORD_CHECKS = ((8, "key", "null"), (16, "value", "null"), (24, "headers", "headers"),
                  (32, "topic", "text"), (40, "reserved", "reserved"),
                  (56, "source_partition", "null"), (64, "source_offset", "null"))
_HEADER_CHECKS = ((0, "name", "text"), (8, "value", "null"))
# Changes that keep every byte of the arena in use (see `output`). A replaced key or value is
# not one: its old bytes must not travel on in the new batch (a transform that redacts a value
# hands on no trace of it).
_ARENA_KEEPING = frozenset(("+headers", "timestamp", "partition", "offset"))
_NO_CHANGES = {}


def _ranges_ok(pairs, ones, limit, nullable):
    """Whether every (offset, length) in `pairs` (8 bytes each, little-endian u32s) lies within
    `limit` bytes, null ones aside. Computed on one integer holding a 64-bit lane per pair
    (`ones` has a 1 in each), so that no Python object is made per record."""
    p = int.from_bytes(pairs, "little")
    low = ones * 0xFFFFFFFF
    lengths = (p >> 32) & low
    # Bit 40 of a lane is set when offset + length > limit (the sum of a lane stays below 2**41).
    bad = (((p & low) + lengths + ones * ((1 << 40) - 1 - limit)) >> 40) & ones
    if nullable:  # bit 32 of length + 1 is set when the length is NULL
        bad &= ~((lengths + ones) >> 32)
    return not bad


def _utf8_ok(buf, base, pairs):
    """Whether every range of `pairs` is UTF-8 (usually one, a topic or name used by all)."""
    if pairs == pairs[:8] * (len(pairs) // 8):
        pairs = pairs[:8]
    try:
        for o, n in set(struct.iter_unpack("<II", pairs)):
            str(buf[base + o:base + o + n], "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lanes(count):
    return int.from_bytes(b"\x01\0\0\0\0\0\0\0" * count, "little")


class Batch:
    """A batch, checked: `len(batch)`, `batch[i]` and iteration give `Record` views."""

    __slots__ = ("buffer", "_mv", "_n", "_ro", "_rs", "_ho", "_hs", "_hn", "_do", "_dl")

    def __init__(self, buf):
        self.buffer = buf if buf.__class__ is bytes else bytes(buf)
        self._mv = memoryview(self.buffer)
        self._check()

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if not -self._n <= i < self._n:
            raise IndexError("batch index out of range")
        return Record(self, i % self._n)

    def __iter__(self):
        return map(Record, repeat(self, self._n), range(self._n))

    def __repr__(self):
        return f"<weir.Batch of {self._n} records, {len(self.buffer)} bytes>"

    def _check(self):
        buf, size = self.buffer, len(self.buffer)
        if size < 40:
            raise ValueError(f"batch: {size} bytes, shorter than the 40-byte header")
        if size > 0xFFFFFFFF:
            raise ValueError(f"batch: {size} bytes, over the 4 GiB - 1 limit")
        magic, version, hsize, n, rs, hs, hn, flags, ro, ho, do, dl = _HEAD.unpack_from(buf)
        if magic != b"WRB1":
            raise ValueError(f"magic: {magic!r}, expected b'WRB1'")
        if version != 1:
            raise ValueError(f"version: {version}, this reader knows version 1")
        if flags != 0:
            raise ValueError(f"flags: {flags:#x}, must be 0")
        for field, value, least in (("header_size", hsize, 40), ("record_stride", rs, 72),
                                    ("header_stride", hs, 16)):
            if value < least or value % 8:
                raise ValueError(f"{field}: {value}, must be a multiple of 8 and at least {least}")
        for field, value, want in (("records_offset", ro, hsize), ("headers_offset", ho, hsize + n * rs),
                                   ("data_offset", do, hsize + n * rs + hn * hs)):
            if value != want:
                raise ValueError(f"{field}: {value}, expected {want}")
        if do > size:
            raise ValueError(f"batch: {size} bytes, shorter than its entries ({do} bytes)")
        if dl != size - do:
            raise ValueError(f"data_len: {dl}, expected {size - do} (buffer length - data_offset)")
        self._n, self._ro, self._rs, self._ho, self._hs, self._hn, self._do, self._dl = (
            n, ro, rs, ho, hs, hn, do, dl)
        # Rules 4 and 5 on whole columns at once (a few operations on big integers and bytes,
        # none per record); only when one fails are the entries walked one by one, to name the
        # first bad field.
        if n:
            col = self._mv[ro:ho].cast("Q")
            pairs = {rel: col[rel // 8::rs // 8].tobytes() for rel in (8, 16, 24, 32, 56, 64)}
            ones = _lanes(n)
            if not (all(_ranges_ok(pairs[rel], ones, dl, kind == "null") for rel, _, kind in _RECORD_CHECKS
                        if kind in ("null", "text"))
                    and _ranges_ok(pairs[24], ones, hn, False)
                    and not self._mv[ro:ho].cast("I")[11::rs // 4].tobytes().strip(b"\0")  # reserved
                    and _utf8_ok(buf, do, pairs[32])):
                self._locate("record", n, ro, rs, _RECORD_CHECKS)
        if hn:
            col = self._mv[ho:do].cast("Q")
            names, values, ones = col[::hs // 8].tobytes(), col[1::hs // 8].tobytes(), _lanes(hn)
            if not (_ranges_ok(names, ones, dl, False) and _ranges_ok(values, ones, dl, True)
                    and _utf8_ok(buf, do, names)):
                self._locate("header", hn, ho, hs, _HEADER_CHECKS)

    def _locate(self, what, count, start, stride, checks):
        """Raises ValueError naming the first bad field of the records (or header entries)."""
        buf, do, dl = self.buffer, self._do, self._dl
        for i in range(count):
            for rel, field, kind in checks:
                o, n = _RANGE.unpack_from(buf, start + i * stride + rel)
                if kind == "headers":
                    if o + n > self._hn:
                        raise ValueError(f"record {i}: headers (first {o}, count {n}) end past the "
                                         f"header table ({self._hn} entries)")
                elif kind == "reserved":
                    if n:
                        raise ValueError(f"record {i}: reserved is {n}, must be 0")
                elif n == NULL:
                    if kind != "null":
                        raise ValueError(f"{what} {i}: {field} is null")
                elif o + n > dl:
                    raise ValueError(f"{what} {i}: {field} (offset {o}, length {n}) ends past the "
                                     f"data arena ({dl} bytes)")
                elif kind == "text":
                    try:
                        str(buf[do + o:do + o + n], "utf-8")
                    except UnicodeDecodeError as e:
                        raise ValueError(f"{what} {i}: {field} is not UTF-8 ({e.reason} at byte "
                                         f"{e.start})") from None
        raise AssertionError(f"batch refused, yet no {what} is bad")

    def _headers(self, at):
        buf, do, hs = self.buffer, self._do, self._hs
        first, count = _RANGE.unpack_from(buf, at + 24)
        out = []
        for at in range(self._ho + first * hs, self._ho + (first + count) * hs, hs):
            no, nl, vo, vl = _HENTRY.unpack_from(buf, at)
            out.append((str(buf[do + no:do + no + nl], "utf-8"), None if vl == NULL else buf[do + vo:do + vo + vl]))
        return out


def _opt_bytes(v):
    if v is None or v.__class__ is bytes:
        return v
    return v.encode() if isinstance(v, str) else bytes(v)


def _header_list(headers):
    return [(str(n), _opt_bytes(v)) for n, v in headers]


def _bytes_field(name, rel, text=False):
    def get(self):
        c = self._c
        if c is not None and name in c:
            return c[name]
        buf = self._buf
        o, n = _RANGE.unpack_from(buf, self._at + rel)
        if n == NULL:
            return None
        o += self._b._do
        return str(buf[o:o + n], "utf-8") if text else buf[o:o + n]

    def set(self, v):
        self._set(name, str(v) if text else _opt_bytes(v))

    return property(get, set, doc=f"{name}: {'str' if text else 'bytes, or None when null'}")


def _int_field(name, rel, fmt):
    def get(self):
        c = self._c
        if c is not None and name in c:
            return c[name]
        return fmt.unpack_from(self._buf, self._at + rel)[0]

    def set(self, v):
        self._set(name, int(v))

    return property(get, set)


class Record:
    """One record: a view of a batch's entry, decoded field by field, or a new record.

    key, value, source_partition, source_offset: bytes or None; headers: a list of (str, bytes
    or None); timestamp: ms since the epoch (<= 0: the time of the write); topic: str;
    partition, offset: int (-1: none); index: the position in its batch (None for a new one).
    Assigning a field or `add_header` changes the record (a str value is stored as UTF-8).
    """

    __slots__ = ("_b", "_buf", "_i", "_at", "_c")

    def __init__(self, batch, index):
        self._b = batch
        self._buf = batch.buffer
        self._i = index
        self._at = batch._ro + index * batch._rs
        self._c = None  # the changed fields by name (every field, for a new record)

    key = _bytes_field("key", 8)
    value = _bytes_field("value", 16)
    source_partition = _bytes_field("source_partition", 56)
    source_offset = _bytes_field("source_offset", 64)
    topic = _bytes_field("topic", 32, text=True)
    timestamp = _int_field("timestamp", 0, _I64)
    partition = _int_field("partition", 40, _I32)
    offset = _int_field("offset", 48, _I64)

    @property
    def headers(self):
        c = self._c or {}
        out = list(c["headers"]) if "headers" in c else self._b._headers(self._at)
        return out + c["+headers"] if "+headers" in c else out

    @headers.setter
    def headers(self, v):
        self._set("headers", _header_list(v))
        self._c.pop("+headers", None)

    def add_header(self, name, value):
        """Appends a header (value: bytes, str or None); names may repeat."""
        if self._c is None:
            self._c = {}
        self._c.setdefault("headers" if "headers" in self._c else "+headers", []).append(
            (str(name), _opt_bytes(value)))

    @property
    def index(self):
        return self._i

    @property
    def changed(self):
        return self._c is not None

    def text(self):
        """The value as a str (UTF-8), None when null."""
        v = self.value
        return None if v is None else str(v, "utf-8")

    def json(self):
        """The value parsed as JSON, None when null."""
        v = self.value
        return None if v is None else _json.loads(v)

    def _set(self, name, v):
        if self._c is None:
            self._c = {}
        self._c[name] = v

    def __repr__(self):
        return f"Record(index={self._i}, " + ", ".join(f"{f}={getattr(self, f)!r}" for f in _FIELDS) + ")"


_FIELDS = ("key", "value", "headers", "timestamp", "topic", "partition", "offset",
           "source_partition", "source_offset")


def record(key=None, value=None, headers=(), timestamp=0, topic="", partition=-1, offset=-1,
           source_partition=None, source_offset=None):
    """A new record, in no batch: for a source's `poll` or a transform's output."""
    r = Record.__new__(Record)
    r._b = r._buf = r._i = None
    r._at = 0
    r._c = {"key": _opt_bytes(key), "value": _opt_bytes(value), "headers": _header_list(headers),
            "timestamp": int(timestamp), "topic": str(topic), "partition": int(partition),
            "offset": int(offset), "source_partition": _opt_bytes(source_partition),
            "source_offset": _opt_bytes(source_offset)}
    return r


class Builder:
    """Writes a batch: `append(...)` or `append_record(record)` per record, then `finish()`.

    The arena gets each record's bytes in entry order (key, value, each header's name and
    value, topic, source partition, source offset); a topic or header name already written is
    reused; a null range is (0, NULL), an empty one (0, 0). tests/sdk/golden-batch.md shows it.
    """

    __slots__ = ("_e", "_h", "_a", "_n", "_hn", "_strs", "_src", "_copied")

    def __init__(self):
        self._e, self._h, self._a = bytearray(), bytearray(), bytearray()
        self._n = self._hn = 0
        self._strs = {}  # topic or header name -> (offset, length) in the arena
        self._src, self._copied = None, {}  # the same for the ranges of batch _src's arena

    def __len__(self):
        return self._n

    def append(self, key=None, value=None, headers=(), timestamp=0, topic="", partition=-1,
               offset=-1, source_partition=None, source_offset=None):
        first = self._hn
        k, v = self._bytes(key), self._bytes(value)
        self._headers(headers)
        self._entry(timestamp, k, v, first, self._str(topic), partition, offset,
                    self._bytes(source_partition), self._bytes(source_offset))

    def append_record(self, r):
        """Appends a record: a view's unchanged fields are copied as bytes, changed ones written."""
        if r.__class__ is not Record:
            raise TypeError(f"expected a weir.Record, not {type(r).__name__}")
        b, c = r._b, r._c
        if b is None:
            return self.append(**c)
        c = c or _NO_CHANGES
        if b is not self._src:
            self._src, self._copied = b, {}
        f, first, copy = _ENTRY.unpack_from(r._buf, r._at), self._hn, self._copy
        k = self._bytes(c["key"]) if "key" in c else copy(b, f[1], f[2])
        v = self._bytes(c["value"]) if "value" in c else copy(b, f[3], f[4])
        if "headers" in c:
            self._headers(c["headers"])
        else:
            for at in range(b._ho + f[5] * b._hs, b._ho + (f[5] + f[6]) * b._hs, b._hs):
                no, nl, vo, vl = _HENTRY.unpack_from(b.buffer, at)
                self._header(copy(b, no, nl, True), copy(b, vo, vl))
        self._headers(c.get("+headers", ()))
        t = self._str(c["topic"]) if "topic" in c else copy(b, f[7], f[8], True)
        sp = self._bytes(c["source_partition"]) if "source_partition" in c else copy(b, f[12], f[13])
        so = self._bytes(c["source_offset"]) if "source_offset" in c else copy(b, f[14], f[15])
        self._entry(c.get("timestamp", f[0]), k, v, first, t, c.get("partition", f[9]),
                    c.get("offset", f[11]), sp, so)

    def _extend_shared(self, batch, records):
        """Appends views of `batch` when our arena starts with batch's and they changed at most
        by `_ARENA_KEEPING`: their entries point at the right bytes, and are copied whole."""
        buf, ho, e = batch.buffer, batch._ho, self._e
        for r in records:
            at, c, first = r._at, r._c, self._hn
            hf, hc = _RANGE.unpack_from(buf, at + 24)
            self._h += buf[ho + hf * 16:ho + (hf + hc) * 16]
            self._hn += hc
            pos = len(e)
            e += buf[at:at + 72]
            if c is not None:
                self._headers(c.get("+headers", ()))
                for name, rel, fmt in _NUMBERS:
                    if name in c:
                        fmt.pack_into(e, pos + rel, c[name])
            _RANGE.pack_into(e, pos + 24, first, self._hn - first)
        self._n += len(records)

    def finish(self):
        """The batch's bytes. An empty batch is the 40-byte header."""
        n, hn, a = self._n, self._hn, self._a
        ho = 40 + 72 * n
        do = ho + 16 * hn
        if do + len(a) > 0xFFFFFFFF:
            raise ValueError(f"batch: {do + len(a)} bytes, over the 4 GiB - 1 limit")
        return b"".join((_HEAD.pack(b"WRB1", 1, 40, n, 72, 16, hn, 0, 40, ho, do, len(a)), self._e, self._h, a))

    def _entry(self, ts, k, v, first, t, partition, offset, sp, so):
        self._e += _ENTRY.pack(ts, k[0], k[1], v[0], v[1], first, self._hn - first, t[0], t[1],
                               partition, 0, offset, sp[0], sp[1], so[0], so[1])
        self._n += 1

    def _headers(self, headers):
        for name, value in headers:
            self._header(self._str(name), self._bytes(value))

    def _header(self, name, value):
        self._h += _HENTRY.pack(name[0], name[1], value[0], value[1])
        self._hn += 1

    def _bytes(self, v):
        if v is None:
            return _NULL_RANGE
        if v.__class__ is not bytes:
            v = _opt_bytes(v)
        if not v:
            return _EMPTY_RANGE
        self._a += v
        return len(self._a) - len(v), len(v)

    def _str(self, s):
        r = self._strs.get(s)
        if r is None:
            r = self._strs[s] = self._bytes(s.encode())
        return r

    def _copy(self, b, o, n, shared=False):
        """Copies the range (o, n) of batch b's arena into ours (a shared one, a topic or a
        header name, only once)."""
        if n == 0 or n == NULL:
            return _NULL_RANGE if n else _EMPTY_RANGE
        if shared and (o, n) in self._copied:
            return self._copied[o, n]
        self._a += b.buffer[b._do + o:b._do + o + n]
        r = (len(self._a) - n, n)
        if shared:
            self._copied[o, n] = r
        return r


_NULL_RANGE, _EMPTY_RANGE = (0, NULL), (0, 0)


EMPTY = Builder().finish()


# --- Errors: the contract's `error` variant, as exceptions ----------------------------------

class Error(Exception):
    """The contract's expected failures (raise a subclass); any other exception traps."""


class RecordFailed(Exception):
    """A transform's per-record function raised something other than a `weir.Error` (a bug):
    the task traps with this, naming the record, the original chained to it."""


class Retriable(Error):
    """Try the same call again later (a database restarting, a timeout)."""


class Fatal(Error):
    """Stop the task."""


class InvalidConfig(Error):
    """The configuration is wrong (`key`'s value); the task cannot start."""

    def __init__(self, key, message):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


class BadRecord(Error):
    """The record at `index` of the batch given cannot be handled; nothing of the batch was done."""

    def __init__(self, index, message):
        super().__init__(f"record {index}: {message}")
        self.index, self.message = index, message


# --- Plugins ---------------------------------------------------------------------------------

Key = namedtuple("Key", "name documentation type default required secret")
Position = namedtuple("Position", "topic partition offset")


def key(name, documentation="", type="string", default=None, required=False, secret=False):
    """A configuration key, for `config_keys` (type: string, int, long, double, boolean, list,
    password)."""
    return Key(name, documentation, type, default, required, secret)


class Config(dict):
    """A connector's configuration: str to str."""

    def require(self, key):
        """The value of `key`; InvalidConfig(key, "required") when it is missing."""
        if key not in self:
            raise InvalidConfig(key, "required")
        return self[key]


class Plugin:
    name = None  # default: the class's name
    version = "0.1.0"
    description = ""
    config_keys = ()  # weir.key(...), one per key

    def validate(self, config):
        """Errors beyond what the keys say: InvalidConfig objects or (key, message) pairs."""
        return []

    def task_configs(self, config, max_tasks):
        """At most max_tasks configs, one per task (sources and sinks)."""
        return [config]

    def open(self, config, committed=None):
        pass

    def close(self):
        pass


class Transform(Plugin):
    def transform(self, record):
        """One record in: the record, a new one, None (drop it) or a list of Records out."""
        raise NotImplementedError("a weir.Transform overrides transform(record) or apply(batch)")

    def apply(self, batch):
        """A Batch in: Records out (a list or any iterable), or `batch` itself (unchanged)."""
        fn, out = self.transform, []
        keep, extend = out.append, out.extend
        for rec in batch:
            try:
                r = fn(rec)
            except Error:
                raise
            except Exception as e:  # a bug: the trap's message says which record it hit
                raise RecordFailed(f"transform raised {type(e).__name__} at record {rec.index} of the "
                                   f"batch (index from 0): {e}") from e
            if r.__class__ is Record:
                keep(r)
            elif r is not None:
                extend(r)
        return out


class Source(Plugin):
    """open(config, committed: [(source partition, source offset)]), poll(max_records) ->
    Records (an iterable, a Builder or None: nothing now), ack(stored), close()."""

    def poll(self, max_records):
        raise NotImplementedError("a weir.Source overrides poll(max_records)")

    def ack(self, stored):
        pass


class Sink(Plugin):
    """open(config, committed: [Position]), put(batch), flush(up_to: [Position]) -> the
    Positions now durable (None: all of up_to), close()."""

    def put(self, batch):
        raise NotImplementedError("a weir.Sink overrides put(batch)")

    def flush(self, up_to):
        return None


def output(batch, out):
    """How `apply` answers for what the plugin returned from batch: ("passthrough", None),
    ("select", indexes) or ("replace", bytes)."""
    if out is batch:
        return "passthrough", None
    if isinstance(out, (bytes, bytearray, memoryview)):
        return "replace", bytes(out)
    if out is None:
        raise TypeError("apply returned None; return [] to drop every record")
    if out.__class__ is not list:
        out = list(out)
    unchanged = True  # None: not only records of batch with arena-keeping changes
    for r in out:
        if r.__class__ is not Record:
            raise TypeError(f"a transform returns weir.Record objects, not {type(r).__name__}")
        if r._c is not None:
            if r._b is not batch or not r._c.keys() <= _ARENA_KEEPING:
                unchanged = None
                break
            unchanged = False
        elif r._b is not batch:
            unchanged = None
            break
    b = Builder()
    if unchanged is not None:
        indexes = [r._i for r in out]
        if unchanged:
            return ("passthrough", None) if indexes == list(range(len(batch))) else ("select", indexes)
        if batch._rs == 72 and batch._hs == 16 and indexes == list(range(len(batch))):
            # Every record kept in order, only headers added or numbers set: the input's
            # tables and arena, patched where changed.
            return "replace", _patched(batch, out)
        if len(set(indexes)) == len(batch) and batch._rs == 72 and batch._hs == 16:
            # Every record kept, and only headers added or numbers set: the new batch starts
            # with the input's arena (no byte of it becomes garbage), and the entries are
            # copied whole.
            b._a += batch._mv[batch._do:]
            b._extend_shared(batch, out)
            return "replace", b.finish()
    for r in out:
        b.append_record(r)
    return "replace", b.finish()


def _patched(batch, out):
    """The batch of `out` (batch's records in order, changed at most by `_ARENA_KEEPING`): the
    input's entries, header table and arena copied whole, then each changed record's entry
    patched. A record given headers gets a new run of header entries (a copy of its old ones,
    then the added) at the end of the table, their bytes at the end of the arena; its old run
    stays in the table unreferenced (entries only: every byte they point at is still in use)."""
    mv, ro, ho, do = batch._mv, batch._ro, batch._ho, batch._do
    e, h, a = bytearray(mv[ro:ho]), bytearray(mv[ho:do]), bytearray(mv[do:])
    hn = batch._hn
    pack, unpack, tail = _RANGE.pack_into, _RANGE.unpack_from, len(a)
    for r in out:
        c = r._c
        if c is None:
            continue
        at = r._i * 72
        for name, rel, fmt in _NUMBERS:
            if name in c:
                fmt.pack_into(e, at + rel, c[name])
        added = c.get("+headers")
        if added:
            first, count = unpack(e, at + 24)
            h += h[first * 16:(first + count) * 16]
            for name, value in added:
                name = name.encode()
                a += name
                if value is None:
                    h += _HENTRY.pack(tail, len(name), 0, NULL)
                else:
                    a += value
                    h += _HENTRY.pack(tail, len(name), tail + len(name), len(value))
                tail += len(name) + (len(value) if value else 0)
            pack(e, at + 24, hn, count + len(added))
            hn += count + len(added)
    n = len(batch)
    ho = 40 + 72 * n
    do = ho + 16 * hn
    if do + tail > 0xFFFFFFFF:
        raise ValueError(f"batch: {do + tail} bytes, over the 4 GiB - 1 limit")
    return b"".join((_HEAD.pack(b"WRB1", 1, 40, n, 72, 16, hn, 0, 40, ho, do, tail), e, h, a))


def _batch_bytes(out):
    if out is None:
        return EMPTY
    if isinstance(out, (bytes, bytearray, memoryview)):
        return bytes(out)
    if isinstance(out, (Builder, Batch)):
        return out.finish() if isinstance(out, Builder) else out.buffer
    b = Builder()
    for r in out:
        b.append_record(r)
    return b.finish()


# --- What componentize-py exports ------------------------------------------------------------

class _Task:
    """The plugin's instance for this task (module level: componentize-py may create a new
    export object per call), made at `open`, or before for describe/validate/task_configs."""

    def __init__(self, cls):
        self.cls, self.instance = cls, None

    def get(self):
        if self.instance is None:
            self.instance = self.cls()
        return self.instance

    def open(self, *args):
        self.instance = self.cls()
        self.instance.open(*args)


def _exports(cls, kind, interface, methods):
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import types as t

    task = _Task(cls)

    def call(fn, *args):
        try:
            return fn(*args)
        except Retriable as e:
            raise Err(t.Error_Retriable(str(e))) from None
        except Fatal as e:
            raise Err(t.Error_Fatal(str(e))) from None
        except InvalidConfig as e:
            raise Err(t.Error_InvalidConfig(t.ConfigError(key=e.key, message=e.message))) from None
        except BadRecord as e:
            raise Err(t.Error_BadRecord(t.BadRecord(index=e.index, message=e.message))) from None

    def describe(self):
        keys = [t.ConfigKey(name=k.name, type=t.ConfigType[k.type.upper()], default_value=k.default,
                            documentation=k.documentation, required=k.required, secret=k.secret)
                for k in cls.config_keys]
        return t.Descriptor(name=cls.name or cls.__name__, version=cls.version,
                            kind=getattr(t.PluginKind, kind), description=cls.description, config=keys)

    def validate(self, config):
        try:
            errors = task.get().validate(Config(config)) or ()
        except InvalidConfig as e:
            errors = [e]
        return [t.ConfigError(key=e.key, message=e.message) if isinstance(e, InvalidConfig)
                else t.ConfigError(key=e[0], message=e[1]) for e in errors]

    def task_configs(self, config, max_tasks):
        configs = call(task.get().task_configs, Config(config), max_tasks)
        return [list(c.items()) if isinstance(c, dict) else list(c) for c in configs]

    body = dict(describe=describe, validate=validate, **methods(task, call, t))
    if kind != "TRANSFORM":
        body["task_configs"] = task_configs
    return type(interface, (getattr(exports, interface),), body)


def transformer(cls):
    """The class to export for a weir.Transform: `Transformer = weir.transformer(MyTransform)`."""

    def methods(task, call, t):
        passthrough = t.Output_Passthrough()

        def open(self, config):
            call(task.open, Config(config))

        def apply(self, input):
            batch = Batch(input)
            kind, payload = output(batch, call(task.get().apply, batch))
            if kind == "passthrough":
                return passthrough
            return t.Output_Select(payload) if kind == "select" else t.Output_Replace(payload)

        return dict(open=open, apply=apply)

    return _exports(cls, "TRANSFORM", "Transformer", methods)


def source(cls):
    """The class to export for a weir.Source: `Source = weir.source(MySource)`."""

    def methods(task, call, t):
        return dict(open=lambda self, config, committed: call(task.open, Config(config), committed),
                    poll=lambda self, max_records: _batch_bytes(call(task.get().poll, max_records)),
                    ack=lambda self, stored: task.get().ack(stored),
                    close=lambda self: task.get().close())

    return _exports(cls, "SOURCE", "Source", methods)


def sink(cls):
    """The class to export for a weir.Sink: `Sink = weir.sink(MySink)`."""

    def methods(task, call, t):
        def open(self, config, committed):
            call(task.open, Config(config), [Position(p.topic, p.partition, p.offset) for p in committed])

        def flush(self, up_to):
            asked = [Position(p.topic, p.partition, p.offset) for p in up_to]
            done = call(task.get().flush, asked)
            return [t.LogPosition(topic=p[0], partition=p[1], offset=p[2]) if isinstance(p, tuple)
                    else t.LogPosition(topic=p.topic, partition=p.partition, offset=p.offset)
                    for p in (asked if done is None else done)]

        return dict(open=open, flush=flush, put=lambda self, input: call(task.get().put, Batch(input)),
                    close=lambda self: task.get().close())

    return _exports(cls, "SINK", "Sink", methods)


def log(message, level="info"):
    """Logs into the host's span of this task (level: trace, debug, info, warn or error)."""
    from wit_world.imports import log as host

    host.log(host.Level[level.upper()], message)


# --- SQL: the rows layout (wit/ROWS.md) ------------------------------------------------------

Column = namedtuple("Column", "name type")
Column.__doc__ = ("A column of a rows buffer: its name (empty for parameter rows) and the database's "
                  "name for its type (PostgreSQL: INT8, TEXT, NUMERIC...; SQLite: the declared type; "
                  "may be empty).")

_U16, _U32, _U64, _F64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<d")
# A change's fixed part (wit/CHANGES.md): op, lsn, commit_lsn, end_lsn, xid, commit_time, seq,
# relation count; 43 bytes.
_CHANGE = struct.Struct("<BQQQIqIH")
_CHANGE_FIELDS = (("op", 1), ("lsn", 8), ("commit lsn", 8), ("end lsn", 8), ("xid", 4),
                  ("commit time", 8), ("seq", 4), ("relation count", 2))
_COLUMN_TAIL = struct.Struct("<iB")  # a change column's type modifier and flags
_TAG_INT, _TAG_FLOAT, _TAG_LEN = struct.Struct("<Bq"), struct.Struct("<Bd"), struct.Struct("<BI")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class _Unchanged:
    """The type of `UNCHANGED`."""

    __slots__ = ()

    def __repr__(self):
        return "weir.UNCHANGED"

    def __reduce__(self):
        return "UNCHANGED"


UNCHANGED = _Unchanged()
"""In a change's image: a value the log did not carry because it did not change (PostgreSQL's
unchanged TOAST values, tag 7 of wit/CHANGES.md). Test with `value is weir.UNCHANGED`."""


class _BadValue(Exception):
    """The fast decoder met something it does not decode; the slow path names it."""


def _decode(buf, at, count, out, unchanged):
    """Appends `count` tagged values of `buf` from `at` to `out` as Python values; returns where
    they end. The fast path: on a malformed value it raises whatever it met (IndexError,
    struct.error, UnicodeDecodeError, _BadValue), and the caller names the value with
    `_skip_value`. `unchanged`: tag 7 is `UNCHANGED` (images of the changes layout)."""
    size = len(buf)
    append = out.append
    i64, f64, u32 = _I64.unpack_from, _F64.unpack_from, _U32.unpack_from
    for _ in repeat(None, count):
        t = buf[at]
        if t == 3:
            append(i64(buf, at + 1)[0])
            at += 9
        elif t == 5:
            end = at + 5 + u32(buf, at + 1)[0]
            if end > size:
                raise _BadValue
            append(buf[at + 5:end].decode())
            at = end
        elif t == 0:
            append(None)
            at += 1
        elif t == 4:
            append(f64(buf, at + 1)[0])
            at += 9
        elif t == 6:
            end = at + 5 + u32(buf, at + 1)[0]
            if end > size:
                raise _BadValue
            append(buf[at + 5:end])
            at = end
        elif t == 1:
            append(False)
            at += 1
        elif t == 2:
            append(True)
            at += 1
        elif t == 7 and unchanged:
            append(UNCHANGED)
            at += 1
        else:
            raise _BadValue
    return at


_DECODE_ERRORS = (IndexError, struct.error, UnicodeDecodeError, _BadValue)


def _skip_value(buf, at, unchanged):
    """Where the value at `at` ends; ValueError saying what is wrong with it (the slow path)."""
    size = len(buf)
    if at >= size:
        raise ValueError("value tag runs past the end of the buffer")
    t = buf[at]
    at += 1
    if t in (0, 1, 2) or (t == 7 and unchanged):
        return at
    if t in (3, 4):
        if at + 8 > size:
            raise ValueError(f"{'integer' if t == 3 else 'float'} runs past the end of the buffer")
        return at + 8
    if t in (5, 6):
        what = "text" if t == 5 else "bytes"
        if at + 4 > size:
            raise ValueError(f"{what} length runs past the end of the buffer")
        n = _U32.unpack_from(buf, at)[0]
        at += 4
        if at + n > size:
            raise ValueError(f"{what} ({n} bytes) runs past the end of the buffer ({size - at} left)")
        if t == 5:
            try:
                str(buf[at:at + n], "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"text is not UTF-8 ({e.reason} at byte {e.start})") from None
        return at + n
    raise ValueError(f"unknown value tag {t}")


def _short(buf, at, what):
    """The `short` string (u16 length, UTF-8) at `at`, and where it ends."""
    if at + 2 > len(buf):
        raise ValueError(f"{what} runs past the end of the buffer")
    n = _U16.unpack_from(buf, at)[0]
    at += 2
    if at + n > len(buf):
        raise ValueError(f"{what} ({n} bytes) runs past the end of the buffer")
    try:
        return str(buf[at:at + n], "utf-8"), at + n
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} is not UTF-8 ({e.reason} at byte {e.start})") from None


class Rows:
    """SQL rows in the rows layout (wit/ROWS.md): a query's batch, or parameter rows.

    `Rows(buf)` checks the whole buffer and decodes it once. `columns` is a tuple of
    `Column(name, type)`, `names` their names; `len(rows)`, `rows[i]` and iteration give each
    row as a tuple of Python values in column order: None (null), bool, int, float, str (text)
    or bytes. `dicts()` gives them as {column name: value}. A malformed buffer raises
    ValueError naming the first bad value ("row 2, column 1 (name): text is not UTF-8 ...").
    """

    __slots__ = ("buffer", "columns", "_values", "_n")

    def __init__(self, buf):
        self.buffer = buf if buf.__class__ is bytes else bytes(buf)
        buf = self.buffer
        size = len(buf)
        if size > 0xFFFFFFFF:
            raise ValueError(f"rows buffer of {size} bytes, larger than 4 GiB")
        if buf[:4] != b"WRS1":
            raise ValueError(f"not a rows buffer (no WRS1 magic at its start: {bytes(buf[:4])!r})")
        if size < 12:
            raise ValueError(f"rows buffer of {size} bytes, shorter than the 12 bytes of no column and no row")
        ncols = _U32.unpack_from(buf, 4)[0]
        if ncols > size // 4:
            raise ValueError(f"column count {ncols} is more than the buffer can hold")
        columns, at = [], 8
        for i in range(ncols):
            try:
                name, at = _short(buf, at, "name")
                ty, at = _short(buf, at, "type name")
            except ValueError as e:
                raise ValueError(f"column {i}: {e}") from None
            columns.append(Column(name, ty))
        if at + 4 > size:
            raise ValueError("row count runs past the end of the buffer")
        n = _U32.unpack_from(buf, at)[0]
        at += 4
        if ncols == 0 and n:
            raise ValueError(f"{n} rows of no columns")
        if n > (size - at) // max(ncols, 1):
            raise ValueError(f"row count {n} is more than the buffer can hold")
        values = []
        try:
            end = _decode(buf, at, n * ncols, values, False)
        except _DECODE_ERRORS:
            for row in range(n):
                for col, c in enumerate(columns):
                    try:
                        at = _skip_value(buf, at, False)
                    except ValueError as e:
                        raise ValueError(f"row {row}, column {col} ({c.name}): {e}") from None
            raise AssertionError("rows refused, yet no value is bad") from None
        if end != size:
            raise ValueError(f"{size - end} bytes after the last row")
        self.columns, self._values, self._n = tuple(columns), values, n

    @property
    def names(self):
        return tuple(c.name for c in self.columns)

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if not -self._n <= i < self._n:
            raise IndexError("rows index out of range")
        w = len(self.columns)
        i %= self._n
        return tuple(self._values[i * w:(i + 1) * w])

    def __iter__(self):
        return zip(*[iter(self._values)] * len(self.columns))

    def dicts(self):
        """The rows as dicts, {column name: value}."""
        names = self.names
        return (dict(zip(names, r)) for r in self)

    def __repr__(self):
        cols = ", ".join(f"{c.name} {c.type}".rstrip() for c in self.columns)
        return f"<weir.Rows ({cols}): {self._n} rows>"


def _sql_value(v, where):
    """`v` as one of the values the rows layout and `sql.value` carry (None, bool, int, float,
    str, bytes); TypeError or ValueError naming `where` otherwise."""
    c = v.__class__
    if v is None or c is bool or c is float or c is str or c is bytes:
        return v
    if c is int:
        if not _I64_MIN <= v <= _I64_MAX:
            raise ValueError(f"{where}: {v} is out of range for a 64-bit integer")
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return _sql_value(int(v), where)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    raise TypeError(f"{where}: type {type(v).__name__} is not a SQL value (None, bool, int, float, str or "
                    f"bytes; pass others as text and cast them in the statement)")


def rows_buffer(rows, columns=None):
    """A rows buffer (wit/ROWS.md) of `rows` (sequences of None, bool, int, float, str or bytes):
    the parameters of `execute_many`, or rows for a test. `columns`: names, or (name, type)
    pairs; None: unnamed columns, as many as the first row has values. Every row has one value
    per column (ValueError otherwise)."""
    rows = [r if isinstance(r, (tuple, list)) else tuple(r) for r in rows]
    if columns is None:
        columns = [("", "")] * (len(rows[0]) if rows else 0)
    columns = [(c, "") if isinstance(c, str) else tuple(c) for c in columns]
    if rows and not columns:
        raise ValueError(f"{len(rows)} rows of no columns")
    out = [b"WRS1", _U32.pack(len(columns))]
    for name, ty in columns:
        for s in (name, ty):
            s = str(s).encode()
            if len(s) > 0xFFFF:
                raise ValueError(f"column name or type of {len(s)} bytes, over the 65535-byte limit")
            out += (_U16.pack(len(s)), s)
    out.append(_U32.pack(len(rows)))
    width, put = len(columns), out.append
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} values, not {width}")
        for j, v in enumerate(row):
            c = v.__class__
            if c is not int and c is not str and v is not None and c is not float:
                v = _sql_value(v, f"row {i}, column {j}")
                c = v.__class__
            if v is None:
                put(b"\0")
            elif c is int:
                if not _I64_MIN <= v <= _I64_MAX:
                    raise ValueError(f"row {i}, column {j}: {v} is out of range for a 64-bit integer")
                put(_TAG_INT.pack(3, v))
            elif c is str:
                v = v.encode()
                out += (_TAG_LEN.pack(5, len(v)), v)
            elif c is float:
                put(_TAG_FLOAT.pack(4, v))
            elif c is bool:
                put(b"\2" if v else b"\1")
            else:
                out += (_TAG_LEN.pack(6, len(v)), v)
    return b"".join(out)


# --- SQL: the changes layout (wit/CHANGES.md) ------------------------------------------------

ChangeColumn = namedtuple("ChangeColumn", "name type type_modifier key")
ChangeColumn.__doc__ = ("A column of a table in a changes buffer: name, type (as in the rows layout), "
                        "type_modifier (PostgreSQL's atttypmod, -1 when none), key (part of the "
                        "replica identity).")


class Relation(namedtuple("Relation", "schema table columns")):
    """A table a changes batch touches: schema, table, columns (a tuple of `ChangeColumn`)."""

    __slots__ = ()

    @property
    def names(self):
        return tuple(c.name for c in self.columns)

    @property
    def key(self):
        """The names of the replica identity's columns (the primary key, by default)."""
        return tuple(c.name for c in self.columns if c.key)


INSERT, UPDATE, DELETE, TRUNCATE = "c", "u", "d", "t"
_OPS = {ord(INSERT): INSERT, ord(UPDATE): UPDATE, ord(DELETE): DELETE, ord(TRUNCATE): TRUNCATE}
_OP_NAMES = {INSERT: "an insert", UPDATE: "an update", DELETE: "a delete", TRUNCATE: "a truncate"}


class Image:
    """A row image of a change: `kind` is "key" (only the replica identity's columns; the others
    are None) or "full" (every column); `values` a tuple, one value per column of `relation`,
    each as a `Rows` value or `weir.UNCHANGED` (left out of the log because it did not change).
    `image[i]` or `image["name"]`, `get(name)`, `as_dict()`, `len()` and iteration read it."""

    __slots__ = ("kind", "values", "relation")

    KEY, FULL = "key", "full"

    def __init__(self, kind, values, relation):
        self.kind, self.values, self.relation = kind, values, relation

    def __len__(self):
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def __getitem__(self, i):
        if i.__class__ is str:
            try:
                i = self.names.index(i)
            except ValueError:
                raise KeyError(i) from None
        return self.values[i]

    def get(self, name, default=None):
        """The value of the column `name`; `default` when the table has no such column."""
        try:
            return self[name]
        except KeyError:
            return default

    @property
    def names(self):
        return self.relation.names if self.relation is not None else ()

    def as_dict(self):
        """{column name: value}, in column order."""
        return dict(zip(self.names, self.values))

    def __eq__(self, other):
        return (other.__class__ is Image and (self.kind, self.values, self.relation) ==
                (other.kind, other.values, other.relation))

    def __repr__(self):
        return f"Image({self.kind!r}, {self.as_dict()!r})"


class Change:
    """One row change of a `Changes` batch.

    op: "c" insert, "u" update, "d" delete, "t" truncate (Debezium's letters; `weir.INSERT`...);
    lsn: its own log position; commit_lsn: its transaction's commit position (changes arrive in
    commit order, so it never goes down); end_lsn: on the last change of its transaction, the
    position just past the commit (confirm it once the transaction is stored), 0 on the others;
    xid: the transaction id; commit_time_us: the commit's time in microseconds since the Unix
    epoch; seq: its index in its transaction, from 0; relations: the tables it touched (one
    `Relation`, or for a truncate every table truncated together), `relation` the first (None
    for a truncate of none); before, after: `Image`s, or None when absent (an insert has an
    after image, a delete a before image, an update an after image and maybe a before one, a
    truncate neither).
    """

    __slots__ = ("op", "lsn", "commit_lsn", "end_lsn", "xid", "commit_time_us", "seq", "relations",
                 "before", "after")

    @property
    def relation(self):
        return self.relations[0] if self.relations else None

    def __repr__(self):
        table = ",".join(f"{r.schema}.{r.table}" for r in self.relations)
        return (f"Change({self.op!r} {table} lsn={self.lsn} commit_lsn={self.commit_lsn} end_lsn={self.end_lsn} "
                f"xid={self.xid} seq={self.seq} before={self.before!r} after={self.after!r})")


def _image(buf, at, relation, ncols, which):
    """The image at `at` (None when absent) and where it ends."""
    if at >= len(buf):
        raise ValueError(f"{which} image kind runs past the end of the buffer")
    kind = buf[at]
    at += 1
    if kind == 0:
        return None, at
    if kind not in (1, 2):
        raise ValueError(f"{which} image: unknown image kind {kind} (0 absent, 1 key, 2 full)")
    values = []
    try:
        end = _decode(buf, at, ncols, values, True)
    except _DECODE_ERRORS:
        for col in range(ncols):
            try:
                at = _skip_value(buf, at, True)
            except ValueError as e:
                raise ValueError(f"{which} image, column {col} ({relation.columns[col].name}): {e}") from None
        raise AssertionError("image refused, yet no value is bad") from None
    return Image(Image.KEY if kind == 1 else Image.FULL, tuple(values), relation), end


class Changes:
    """Row changes read from a database's log, in the changes layout (wit/CHANGES.md).

    `Changes(buf)` checks the whole buffer and decodes it once. `position`: every change at or
    before it has been delivered (in this batch or an earlier one), so once they are stored it
    may be confirmed; a batch with no change may still move it. `relations`: the tables the
    batch touches (`Relation`s); `len()`, `[i]` and iteration give the `Change`s, in commit
    order. A malformed buffer raises ValueError naming the first bad part ("change 3: after
    image, column 1 (doc): unknown value tag 9").
    """

    __slots__ = ("buffer", "position", "relations", "changes")

    def __init__(self, buf):
        self.buffer = buf if buf.__class__ is bytes else bytes(buf)
        buf = self.buffer
        size = len(buf)
        if buf[:4] != b"WRC1":
            raise ValueError(f"not a changes buffer (no WRC1 magic at its start: {bytes(buf[:4])!r})")
        if size < 20:
            raise ValueError(f"changes buffer of {size} bytes, shorter than the 20 bytes of no relation "
                             f"and no change")
        self.position = _U64.unpack_from(buf, 4)[0]
        nrel = _U32.unpack_from(buf, 12)[0]
        if nrel > size // 6:
            raise ValueError(f"relation count {nrel} is more than the buffer can hold")
        relations, at = [], 16
        for i in range(nrel):
            try:
                schema, at = _short(buf, at, "schema")
                table, at = _short(buf, at, "table")
                if at + 2 > size:
                    raise ValueError("column count runs past the end of the buffer")
                ncols = _U16.unpack_from(buf, at)[0]
                at += 2
                columns = []
                for c in range(ncols):
                    try:
                        name, at = _short(buf, at, "name")
                        ty, at = _short(buf, at, "type name")
                        if at + 5 > size:
                            raise ValueError("type modifier and flags run past the end of the buffer")
                        modifier, flags = _COLUMN_TAIL.unpack_from(buf, at)
                        at += 5
                    except ValueError as e:
                        raise ValueError(f"column {c}: {e}") from None
                    columns.append(ChangeColumn(name, ty, modifier, bool(flags & 1)))
            except ValueError as e:
                raise ValueError(f"relation {i}: {e}") from None
            relations.append(Relation(schema, table, tuple(columns)))
        if at + 4 > size:
            raise ValueError("change count runs past the end of the buffer")
        n = _U32.unpack_from(buf, at)[0]
        at += 4
        if n > (size - at) // 45:  # the smallest change: a truncate of no table, 45 bytes
            raise ValueError(f"change count {n} is more than the buffer can hold")
        changes = []
        for k in range(n):
            try:
                change, at = self._change(buf, at, relations)
            except ValueError as e:
                raise ValueError(f"change {k}: {e}") from None
            changes.append(change)
        if at != size:
            raise ValueError(f"{size - at} bytes after the last change")
        self.relations, self.changes = relations, changes

    @staticmethod
    def _change(buf, at, relations):
        size = len(buf)
        if at + 43 > size:
            for field, width in _CHANGE_FIELDS:
                if at + width > size:
                    raise ValueError(f"{field} runs past the end of the buffer")
                at += width
        code, lsn, commit_lsn, end_lsn, xid, commit_time, seq, nrel = _CHANGE.unpack_from(buf, at)
        at += 43
        op = _OPS.get(code)
        if op is None:
            raise ValueError(f"unknown op {code} (not {', '.join(map(repr, _OPS.values()))})")
        if at + 4 * nrel > size:
            raise ValueError(f"relation indexes ({nrel}) run past the end of the buffer")
        indexes = struct.unpack_from(f"<{nrel}I", buf, at)
        at += 4 * nrel
        for i in indexes:
            if i >= len(relations):
                raise ValueError(f"relation index {i} out of range (the batch describes {len(relations)})")
        if op != TRUNCATE and nrel != 1:
            raise ValueError(f"{_OP_NAMES[op]} names {nrel} tables, not one")
        rels = tuple(relations[i] for i in indexes)
        relation = rels[0] if rels else None
        ncols = len(relation.columns) if relation else 0
        c = Change()
        c.op, c.lsn, c.commit_lsn, c.end_lsn, c.xid, c.commit_time_us, c.seq, c.relations = (
            op, lsn, commit_lsn, end_lsn, xid, commit_time, seq, rels)
        c.before, at = _image(buf, at, relation, ncols, "before")
        c.after, at = _image(buf, at, relation, ncols, "after")
        return c, at

    def __len__(self):
        return len(self.changes)

    def __getitem__(self, i):
        return self.changes[i]

    def __iter__(self):
        return iter(self.changes)

    def __repr__(self):
        return (f"<weir.Changes of {len(self.changes)} changes on {len(self.relations)} tables, "
                f"position {self.position}>")


# --- SQL: the capability (wit/sql.wit) -------------------------------------------------------

class SqlError(Error):
    """A SQL call failed (the capability's `sql-error`): `message` is the host's (credentials
    masked). Let it out of a plugin's method and it becomes the contract's error: `SqlUnavailable`
    is retriable, `SqlDenied` and `SqlStatementFailed` stop the task."""

    kind = "sql error"

    def __init__(self, message):
        super().__init__(f"{self.kind}: {message}")
        self.message = message


class SqlDenied(SqlError, Fatal):
    """No such grant (`weir.sql.<name>.url`), or its URL, user or password cannot be used."""

    kind = "denied"


class SqlStatementFailed(SqlError, Fatal):
    """The statement failed (syntax, a constraint, a type): it would fail again as it is."""

    kind = "statement failed"


class SqlUnavailable(SqlError, Retriable):
    """The database is unreachable, the connection was lost, or the call ran out of time."""

    kind = "unavailable"


_SQL_ERRORS = {"Denied": SqlDenied, "Statement": SqlStatementFailed, "Unavailable": SqlUnavailable}


def _sql_call(fn, *args):
    """Calls a binding's method; its `Err(sql-error)` raised as a `SqlError`."""
    from componentize_py_types import Err

    try:
        return fn(*args)
    except Err as e:
        cls = _SQL_ERRORS.get(type(e.value).__name__.rpartition("_")[2])
        if cls is None:
            raise
        raise cls(e.value.value) from None


def _host_sql():
    from wit_world.imports import sql as host

    return host


def _param(v, where="parameter"):
    """A Python value as the capability's `sql.value`: None, bool, int (64-bit), float, str,
    bytes (or bytearray, memoryview). A `sql.value` itself is passed as it is."""
    h = _host_sql()
    if v.__class__.__module__ == h.__name__:
        return v
    v = _sql_value(v, where)
    c = v.__class__
    if v is None:
        return h.Value_Null()
    if c is bool:
        return h.Value_Boolean(v)
    if c is int:
        return h.Value_Int(v)
    if c is float:
        return h.Value_Float(v)
    if c is str:
        return h.Value_Text(v)
    return h.Value_Bytes(v)


def _params(params):
    if isinstance(params, (str, bytes)):
        raise TypeError("params is a sequence of values (a one-value tuple is (v,))")
    return [_param(v, f"parameter {i + 1}") for i, v in enumerate(params)]


class SqlQuery:
    """A query's rows, read from its cursor in batches (at most `batch` rows each) as they are
    asked for: iteration gives each row as a tuple, `batches()` each batch as
    `Rows`, `dicts()` each row as a dict; `all()` a list, `one()` the first row or None.
    `columns` are known with the first batch (an empty result has none: the host sends no
    batch). Until it is read to its end or closed (`close()`, `with`), the connection runs
    nothing else."""

    __slots__ = ("_cursor", "_batch", "_ready", "_columns")

    def __init__(self, cursor, batch):
        self._cursor, self._batch, self._ready, self._columns = cursor, batch, [], None

    @property
    def columns(self):
        while self._columns is None and self._cursor is not None:
            rows = self._read()
            if rows is not None:
                self._ready.append(rows)
        return self._columns or ()

    @property
    def names(self):
        return tuple(c.name for c in self.columns)

    def batches(self):
        """Each batch as `Rows`; the cursor is dropped after the last."""
        ready = self._ready
        while True:
            rows = ready.pop(0) if ready else self._read()
            if rows is None:
                return
            yield rows

    def __iter__(self):
        for rows in self.batches():
            yield from rows

    def dicts(self):
        for rows in self.batches():
            yield from rows.dicts()

    def all(self):
        return [r for rows in self.batches() for r in rows]

    def one(self):
        """The first row (None when there is none); the rest is not read."""
        try:
            for rows in self.batches():
                if len(rows):
                    return rows[0]
            return None
        finally:
            self.close()

    def _read(self):
        cursor = self._cursor
        if cursor is None:
            return None
        try:
            buf = _sql_call(cursor.next, self._batch)
            rows = None if buf is None else Rows(buf)
        except BaseException:
            self.close()
            raise
        if rows is None:
            self.close()
        elif self._columns is None and (rows.columns or len(rows)):
            self._columns = rows.columns
        return rows

    def close(self):
        """Drops the cursor: the connection is free again."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.__exit__(None, None, None)
            if self._columns is None:
                self._columns = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_BEGIN_KINDS = ("default", "immediate", "snapshot")


class SqlConnection:
    """A connection to the database the config grants as `weir.sql.<name>.url`, from
    `weir.sql.connect(name)`; it is the plugin's until `close()` (or the end of a `with`).

    Parameters are sequences of Python values (None, bool, int, float, str, bytes), bound to
    the statement's placeholders (SQLite: `?`; PostgreSQL: `$1`, `$2`...). Every call raises
    `SqlError` (`SqlDenied`, `SqlStatementFailed`, `SqlUnavailable`) when the host says it
    failed. `binding` is the generated binding's Connection, for what this does not wrap.
    """

    __slots__ = ("name", "binding", "_dialect")

    def __init__(self, binding, name=""):
        self.binding, self.name, self._dialect = binding, name, None

    @property
    def dialect(self):
        """`postgres` or `sqlite`."""
        if self._dialect is None:
            self._dialect = self.binding.dialect()
        return self._dialect

    def execute(self, statement, params=()):
        """Runs a statement; the rows it affected. Without parameters, a script of several
        statements separated by `;` runs at once."""
        return _sql_call(self.binding.execute, statement, _params(params))

    def execute_many(self, statement, rows):
        """Runs a statement once per row of parameters (sequences of values, or a rows buffer
        as bytes); the rows affected in all. Inside a transaction when one is open."""
        buf = rows if isinstance(rows, bytes) else rows_buffer(rows)
        return _sql_call(self.binding.execute_many, statement, buf)

    def query(self, statement, params=(), batch=1000):
        """Starts a query: a `SqlQuery`, whose rows are read from the database `batch` at a time
        as they are iterated."""
        batch = int(batch)
        if not 1 <= batch <= 0xFFFFFFFF:
            raise ValueError(f"batch: {batch}, must be from 1 to 4294967295 rows")
        return SqlQuery(_sql_call(self.binding.query, statement, _params(params)), batch)

    def query_one(self, statement, params=()):
        """The first row of a query (a tuple), or None when it gives none."""
        return self.query(statement, params, batch=1).one()

    def begin(self, kind="default"):
        """Starts a transaction: "default", "immediate" (SQLite: take the write lock now) or
        "snapshot" (a consistent read-only view)."""
        if kind not in _BEGIN_KINDS:
            raise ValueError(f"begin: {kind!r}, expected one of {', '.join(_BEGIN_KINDS)}")
        _sql_call(self.binding.begin, _host_sql().BeginKind[kind.upper()])

    def begin_at_snapshot(self, snapshot):
        """Starts a read-only transaction that sees what an exported snapshot saw (PostgreSQL),
        such as `SqlChangeStream.exported_snapshot()`."""
        _sql_call(self.binding.begin_at_snapshot, snapshot)

    def commit(self):
        _sql_call(self.binding.commit)

    def rollback(self):
        _sql_call(self.binding.rollback)

    def transaction(self, kind="default"):
        """`with db.transaction(): ...`: begins, commits when the block ends, rolls back when it
        raises (the block's exception is what comes out)."""
        return _Transaction(self, kind)

    def close(self):
        """Gives the connection back (a transaction still open is rolled back by the host)."""
        b, self.binding = self.binding, None
        if b is not None:
            b.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<weir.sql connection {self.name!r}>"


class _Transaction:
    __slots__ = ("db", "kind")

    def __init__(self, db, kind):
        self.db, self.kind = db, kind

    def __enter__(self):
        self.db.begin(self.kind)
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.commit()
            return
        try:
            self.db.rollback()
        except SqlError:
            pass  # the block's exception says more


class SqlChangeStream:
    """A database's change log as a stream (PostgreSQL logical replication), from
    `weir.sql.stream(...)`: `next()` gives `Changes` batches in commit order, `confirm(lsn)`
    lets the server free its log up to a position once what came before it is stored."""

    __slots__ = ("name", "binding")

    def __init__(self, binding, name=""):
        self.binding, self.name = binding, name

    def exported_snapshot(self):
        """When this open created the slot: the snapshot exported then (for
        `SqlConnection.begin_at_snapshot`), until the first `next`; else None."""
        return self.binding.exported_snapshot()

    def next(self, max_changes=1000, wait_ms=1000):
        """The next changes (at most `max_changes`, and about 4 MiB), waiting at most `wait_ms`
        for the first: a `Changes`, which may hold no change and still move the position."""
        return Changes(_sql_call(self.binding.next, int(max_changes), int(wait_ms)))

    def confirm(self, lsn):
        """Everything up to `lsn` is stored: the server may free its log before it."""
        self.binding.confirm(int(lsn))

    def close(self):
        b, self.binding = self.binding, None
        if b is not None:
            b.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _connect(name="db"):
    """A connection to the database the connector's config grants as `weir.sql.<name>.url`."""
    h = _host_sql()
    return SqlConnection(_sql_call(h.Connection.open, name), name)


def _stream(name="db", slot="weir", publication="weir", tables=(), create_slot=True):
    """Opens the change stream of the database granted as `weir.sql.<name>.url`: the slot
    (created when missing if `create_slot`), the publication (created when missing, for
    `tables`, "schema.table" names; empty: all tables)."""
    h = _host_sql()
    if isinstance(tables, str):
        tables = [t for t in tables.split(",") if t.strip()]
    options = h.StreamOptions(slot=slot, publication=publication, tables=[t.strip() for t in tables],
                              create_slot=bool(create_slot))
    return SqlChangeStream(_sql_call(h.ChangeStream.open, name, options), name)


class _Namespace:
    """`weir.sql`: the SQL capability (wit/sql.wit), denied unless the connector's config grants a
    connection by name (`weir.sql.<name>.url`).

        db = weir.sql.connect("db")                       # a SqlConnection
        db.execute("INSERT INTO t VALUES (?, ?)", (1, "a"))
        for id, name in db.query("SELECT id, name FROM t WHERE id > ?", (0,)):
            ...
        stream = weir.sql.stream("db", slot="s", publication="p", tables=["public.t"])
        changes = stream.next(1000, 1000)                 # a weir.Changes

    connect, stream, param (a value as the binding's `sql.value`), rows_buffer; the classes
    Connection, Query, ChangeStream, Rows, Column, Changes, Relation, ChangeColumn, Change,
    Image, UNCHANGED; the errors Error, Denied, StatementFailed, Unavailable.
    """

    __slots__ = ()
    connect = staticmethod(_connect)
    stream = staticmethod(_stream)
    param = staticmethod(_param)
    rows_buffer = staticmethod(rows_buffer)
    Connection, Query, ChangeStream = SqlConnection, SqlQuery, SqlChangeStream
    Rows, Column, Changes, Relation, ChangeColumn, Change, Image = (
        Rows, Column, Changes, Relation, ChangeColumn, Change, Image)
    UNCHANGED = UNCHANGED
    Error, Denied, StatementFailed, Unavailable = SqlError, SqlDenied, SqlStatementFailed, SqlUnavailable

    def __repr__(self):
        return "<weir.sql>"


sql = _Namespace()
