"""weir: Weir plugins (contract weir:connector@0.2.0) in Python, for componentize-py.

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
