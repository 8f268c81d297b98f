"""The Python SDK (sdk/python/weir.py) under plain CPython: the batch layout (reading, writing,
validation), the glue componentize-py exports (with stub/ standing in for its bindings), and
the examples in examples/python, driven as `weir plugin run` drives them.

    /var/cache/weir/venv/bin/python -m pytest tests/sdk/python
"""
import importlib.util
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import weir
from componentize_py_types import Err
from wit_world.imports import types as t

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NULL = 0xFFFFFFFF


# --- The golden batch (tests/sdk/golden-batch.md) --------------------------------------------

def golden_hex():
    text = (ROOT / "tests" / "sdk" / "golden-batch.md").read_text()
    return re.findall(r"```\n([0-9a-f]+)\n```", text)[-1]


GOLDEN_RECORDS = [
    dict(key=b"k1", value=b"hello", headers=[("h", b"v"), ("n", None)], timestamp=1700000000000,
         topic="t", partition=2, offset=7, source_partition=None, source_offset=None),
    dict(key=None, value=b"", headers=[("h", "é".encode())], timestamp=0, topic="t", partition=-1,
         offset=-1, source_partition=b"p", source_offset=b"9"),
]


def fields(r):
    return {f: getattr(r, f) for f in GOLDEN_RECORDS[0]}


def build(records):
    b = weir.Builder()
    for r in records:
        b.append(**r)
    return b.finish()


def test_golden_batch_is_built_byte_for_byte():
    # Typed from BATCH.md by hand, section by section (the doc's last block joins these).
    expected = "".join((
        "57524231 0100 2800 02000000 4800 1000 03000000 00000000 28000000 b8000000 e8000000 0f000000"
        "0068e5cf8b010000 00000000 02000000 02000000 05000000 00000000 02000000 0a000000 01000000"
        "02000000 00000000 0700000000000000 00000000 ffffffff 00000000 ffffffff"
        "0000000000000000 00000000 ffffffff 00000000 00000000 02000000 01000000 0a000000 01000000"
        "ffffffff 00000000 ffffffffffffffff 0d000000 01000000 0e000000 01000000"
        "07000000 01000000 08000000 01000000"
        "09000000 01000000 00000000 ffffffff"
        "07000000 01000000 0b000000 02000000"
        "6b31 68656c6c6f 68 76 6e 74 c3a9 70 39"
    ).split())
    assert expected == golden_hex()
    built = build(GOLDEN_RECORDS)
    assert len(built) == 247
    assert built.hex() == expected


def test_golden_batch_reads_as_its_records_and_copies_to_the_same_bytes():
    golden = bytes.fromhex(golden_hex())
    batch = weir.Batch(golden)
    assert len(batch) == 2
    assert [fields(r) for r in batch] == GOLDEN_RECORDS
    assert [r.index for r in batch] == [0, 1]
    assert batch[-1].source_offset == b"9"
    b = weir.Builder()
    for r in batch:
        b.append_record(r)
    assert b.finish() == golden
    b = weir.Builder()
    for r in GOLDEN_RECORDS:
        b.append_record(weir.record(**r))
    assert b.finish() == golden


def test_an_empty_batch_is_the_40_byte_header():
    assert weir.EMPTY == weir.Builder().finish()
    assert weir.EMPTY.hex() == "575242310100280000000000480010000000000000000000" + "28000000" * 3 + "00000000"
    assert len(weir.Batch(weir.EMPTY)) == 0
    assert list(weir.Batch(weir.EMPTY)) == []


# --- Round trips --------------------------------------------------------------------------

NAMES = ["h", "h", "trace-id", "ключ", "🙂", ""]
TOPICS = ["", "orders", "orders", "ünïcødé/topic", "話題", "a" * 300]


def random_bytes(rng, null=True):
    roll = rng.random()
    if null and roll < 0.15:
        return None
    if roll < 0.3:
        return b""
    return bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 3, 16, 200])))


def random_record(rng):
    return dict(
        key=random_bytes(rng),
        value=random_bytes(rng),
        headers=[(rng.choice(NAMES), random_bytes(rng)) for _ in range(rng.choice([0, 0, 1, 2, 5]))],
        timestamp=rng.choice([0, -1, 1700000000000, rng.randrange(-2**63, 2**63)]),
        topic=rng.choice(TOPICS),
        partition=rng.choice([-1, 0, 7, rng.randrange(-2**31, 2**31)]),
        offset=rng.choice([-1, 0, rng.randrange(-2**63, 2**63)]),
        source_partition=random_bytes(rng),
        source_offset=random_bytes(rng),
    )


@pytest.mark.parametrize("seed", range(40))
def test_random_batches_round_trip(seed):
    rng = random.Random(seed)
    records = [random_record(rng) for _ in range(rng.choice([0, 1, 2, 17, 100]))]
    buf = build(records)
    batch = weir.Batch(buf)
    assert len(batch) == len(records)
    assert [fields(r) for r in batch] == records
    # Fields read in any order, one by one, and the helpers.
    for i in rng.sample(range(len(records)), min(5, len(records))):
        r = batch[i]
        assert r.headers == records[i]["headers"]
        assert r.value == records[i]["value"]
        assert r.key == records[i]["key"]
        assert not r.changed
    # Copying unchanged views writes the same bytes; so does building from new records.
    b = weir.Builder()
    for r in batch:
        b.append_record(r)
    assert b.finish() == buf
    b = weir.Builder()
    for r in records:
        b.append_record(weir.record(**r))
    assert b.finish() == buf


@pytest.mark.parametrize("seed", range(20))
def test_changed_records_are_written_with_their_changes(seed):
    rng = random.Random(1000 + seed)
    records = [random_record(rng) for _ in range(30)]
    batch = weir.Batch(build(records))
    expected, out = [], []
    for view, record in zip(batch, records):
        record = dict(record, headers=list(record["headers"]))
        for field in rng.sample(list(record), rng.randrange(0, 4)):
            new = random_record(rng)[field]
            setattr(view, field, new)
            record[field] = new
        if rng.random() < 0.5:
            view.add_header("processed", "weir")
            record["headers"].append(("processed", b"weir"))
        assert fields(view) == record
        if rng.random() < 0.8:
            out.append(view)
            expected.append(record)
    kind, payload = weir.output(batch, out)
    assert kind == "replace"
    assert [fields(r) for r in weir.Batch(payload)] == expected


def test_str_values_are_stored_as_utf8():
    r = weir.Batch(build([dict(key="ключ", value="значение", headers=[("h", "é")],
                               source_partition="p", source_offset="1")]))[0]
    assert (r.key, r.value, r.headers, r.text()) == ("ключ".encode(), "значение".encode(), [("h", "é".encode())], "значение")
    r.value = '{"a": [1, 2]}'
    assert r.value == b'{"a": [1, 2]}' and r.json() == {"a": [1, 2]} and r.changed
    assert weir.record().text() is None and weir.record().json() is None


# --- Validation: every rule of BATCH.md, with the field named -----------------------------------

def golden():
    return bytearray.fromhex(golden_hex())


def patched(offset, fmt, value, buf=None):
    buf = golden() if buf is None else buf
    struct.pack_into("<" + fmt, buf, offset, value)
    return bytes(buf)


R0, R1, H0 = 40, 40 + 72, 184  # record 0, record 1, header entry 0
DATA_LEN = 15


@pytest.mark.parametrize("buf, message", [
    (b"", "batch: 0 bytes, shorter than the 40-byte header"),
    (bytes(golden())[:39], "batch: 39 bytes, shorter than the 40-byte header"),
    (patched(0, "4s", b"WRB2"), "magic: b'WRB2', expected b'WRB1'"),
    (patched(4, "H", 2), "version: 2, this reader knows version 1"),
    (patched(20, "I", 1), "flags: 0x1, must be 0"),
    (patched(6, "H", 32), "header_size: 32, must be a multiple of 8 and at least 40"),
    (patched(6, "H", 44), "header_size: 44, must be a multiple of 8"),
    (patched(12, "H", 64), "record_stride: 64, must be a multiple of 8 and at least 72"),
    (patched(12, "H", 76), "record_stride: 76"),
    (patched(14, "H", 8), "header_stride: 8"),
    (patched(24, "I", 48), "records_offset: 48, expected 40"),
    (patched(28, "I", 200), "headers_offset: 200, expected 184"),
    (patched(32, "I", 240), "data_offset: 240, expected 232"),
    (patched(36, "I", 16), "data_len: 16, expected 15"),
    # Truncated: in the arena, in the entries, after more records than there are.
    (bytes(golden())[:-1], "data_len: 15, expected 14"),
    (bytes(golden())[:150], "batch: 150 bytes, shorter than its entries (232 bytes)"),
    (patched(8, "I", 3), "headers_offset: 184, expected 256"),
    # Rule 4, per record.
    (patched(R1 + 12, "I", 16), "record 1: key (offset 0, length 16) ends past the data arena (15 bytes)"),
    (patched(R0 + 16, "I", 11), "record 0: value (offset 11, length 5) ends past the data arena (15 bytes)"),
    (patched(R0 + 16, "I", 0xFFFFFFF0), "record 0: value (offset 4294967280, length 5) ends past"),
    (patched(R1 + 56, "I", 15), "record 1: source_partition (offset 15, length 1) ends past"),
    (patched(R1 + 64, "I", 16), "record 1: source_offset (offset 16, length 1) ends past"),
    (patched(R0 + 36, "I", 6), "record 0: topic (offset 10, length 6) ends past the data arena"),
    (patched(R0 + 36, "I", NULL), "record 0: topic is null"),
    (patched(R1 + 28, "I", 2), "record 1: headers (first 2, count 2) end past the header table (3 entries)"),
    (patched(R1 + 24, "I", 0xFFFFFFFF), "record 1: headers (first 4294967295, count 1) end past"),
    (patched(R0 + 44, "I", 9), "record 0: reserved is 9, must be 0"),
    (patched(232 + 10, "B", 0xFF), "record 0: topic is not UTF-8 (invalid start byte at byte 0)"),
    (patched(R1 + 32, "I", 11), "record 1: topic is not UTF-8"),  # "é" cut in the middle
    # Rule 5, per header entry.
    (patched(H0 + 16 + 4, "I", 7), "header 1: name (offset 9, length 7) ends past the data arena"),
    (patched(H0 + 32 + 12, "I", 5), "header 2: value (offset 11, length 5) ends past the data arena"),
    (patched(H0 + 4, "I", NULL), "header 0: name is null"),
    (patched(232 + 7, "B", 0xC3), "header 0: name is not UTF-8"),
])
def test_every_validation_rule_names_the_bad_field(buf, message):
    with pytest.raises(ValueError) as e:
        weir.Batch(buf)
    assert message in str(e.value)


@pytest.mark.parametrize("rel, field", [(8, "key"), (16, "value"), (32, "topic"), (56, "source_partition"),
                                        (64, "source_offset")])
def test_a_bad_range_is_found_among_many_records_and_nulls(rel, field):
    rng = random.Random(rel)
    records = [random_record(rng) for _ in range(300)]
    records[157][field] = "x" if field == "topic" else b"xy"
    buf = bytearray(build(records))
    batch = weir.Batch(bytes(buf))
    at, dl = batch._ro + 157 * 72 + rel, batch._dl
    struct.pack_into("<II", buf, at, dl - 2, 2)  # ends exactly at the end of the arena: fine
    weir.Batch(bytes(buf))
    struct.pack_into("<II", buf, at, dl - 1, 2)
    with pytest.raises(ValueError, match=rf"^record 157: {field} \(offset {dl - 1}, length 2\) ends past"):
        weir.Batch(bytes(buf))
    struct.pack_into("<II", buf, at, 0, NULL)
    if field == "topic":
        with pytest.raises(ValueError, match="^record 157: topic is null"):
            weir.Batch(bytes(buf))
    else:
        assert getattr(weir.Batch(bytes(buf))[157], field) is None


def test_a_bad_header_entry_is_found_among_many():
    rng = random.Random(5)
    records = [dict(random_record(rng), headers=[("h%d" % (i % 7), b"v")] * 3) for i in range(100)]
    buf = bytearray(build(records))
    batch = weir.Batch(bytes(buf))
    struct.pack_into("<I", buf, batch._ho + 250 * 16 + 12, batch._dl)  # header 250's value length
    with pytest.raises(ValueError, match="^header 250: value .* ends past the data arena"):
        weir.Batch(bytes(buf))


def test_offset_plus_length_is_computed_without_overflow():
    # 0xFFFFFFF8 + 0x10 wraps to 8 in 32 bits, inside the arena; it must still be refused.
    buf = patched(R0 + 8, "I", 0xFFFFFFF8)
    buf = patched(R0 + 12, "I", 0x10, bytearray(buf))
    with pytest.raises(ValueError, match=r"record 0: key \(offset 4294967288, length 16\) ends past"):
        weir.Batch(buf)


def test_the_first_bad_field_is_named():
    buf = golden()
    struct.pack_into("<I", buf, R1 + 16, 99)  # record 1 value
    struct.pack_into("<I", buf, R1 + 12, 99)  # record 1 key: named first (entry order)
    struct.pack_into("<I", buf, H0 + 4, 99)  # header 0: records are checked first
    with pytest.raises(ValueError, match="record 1: key"):
        weir.Batch(bytes(buf))
    struct.pack_into("<I", buf, R0 + 48, 1)  # record 0 offset: not a range, fine
    struct.pack_into("<I", buf, R0 + 64 + 4, 0)  # record 0 source offset (0, 0): fine
    with pytest.raises(ValueError, match="record 1: key"):
        weir.Batch(bytes(buf))


def test_ranges_may_overlap_and_be_shared_and_nulls_need_no_zero_offset():
    buf = golden()
    struct.pack_into("<II", buf, R1 + 16, 2, 5)  # record 1's value is record 0's
    struct.pack_into("<II", buf, R1 + 8, 3, 4)  # its key overlaps it
    struct.pack_into("<II", buf, R0 + 56, 14, NULL)  # a null at offset 14
    batch = weir.Batch(bytes(buf))
    assert (batch[1].key, batch[1].value, batch[0].source_partition) == (b"ello", b"hello", None)


def restrided(records, header_size, record_stride, header_stride):
    """A batch of a later (larger) layout: each header, entry and header entry has 8 more bytes
    (0xEE), which a version-1 reader skips."""
    src = weir.Batch(build(records))
    buf, n, hn = src.buffer, src._n, src._hn
    extra = lambda size, known: b"\xee" * (size - known)
    entries = b"".join(buf[40 + i * 72:40 + (i + 1) * 72] + extra(record_stride, 72) for i in range(n))
    hentries = b"".join(buf[src._ho + i * 16:src._ho + (i + 1) * 16] + extra(header_stride, 16) for i in range(hn))
    arena = buf[src._do:]
    ho = header_size + n * record_stride
    do = ho + hn * header_stride
    head = struct.pack("<4sHHIHHIIIIII", b"WRB1", 1, header_size, n, record_stride, header_stride, hn, 0,
                       header_size, ho, do, len(arena))
    return head + extra(header_size, 40) + entries + hentries + arena


def test_larger_strides_of_a_later_version_are_read_and_skipped():
    rng = random.Random(7)
    records = [random_record(rng) for _ in range(25)]
    buf = restrided(records, 48, 80, 24)
    batch = weir.Batch(buf)
    assert [fields(r) for r in batch] == records
    # Copied into a version-1 batch, and changed.
    assert weir.output(batch, list(batch)) == ("passthrough", None)
    views = list(batch)
    for r in views:
        r.add_header("x", None)
    kind, payload = weir.output(batch, views)
    assert kind == "replace"
    assert [fields(r) for r in weir.Batch(payload)] == [dict(r, headers=r["headers"] + [("x", None)]) for r in records]


def test_a_batch_accepts_bytes_like_input_and_indexes_like_a_list():
    buf = bytes.fromhex(golden_hex())
    for like in (bytearray(buf), memoryview(buf)):
        assert [fields(r) for r in weir.Batch(like)] == GOLDEN_RECORDS
    batch = weir.Batch(buf)
    with pytest.raises(IndexError):
        batch[2]
    with pytest.raises(IndexError):
        batch[-3]
    assert batch[-2].key == b"k1"
    assert "index=0" in repr(batch[0]) and "2 records" in repr(batch)


# --- What a transform returns -------------------------------------------------------------

def sample_batch(n=6):
    return weir.Batch(build([dict(key=b"k%d" % i, value=b'{"n":%d}' % i, headers=[("h", b"%d" % i)],
                                  timestamp=i + 1, topic="orders", partition=i % 2, offset=100 + i)
                             for i in range(n)]))


def run(fn, batch):
    class T(weir.Transform):
        def transform(self, record):
            return fn(record)

    return weir.output(batch, T().apply(batch))


def test_unchanged_records_in_order_are_a_passthrough():
    batch = sample_batch()
    assert run(lambda r: r, batch) == ("passthrough", None)
    assert run(lambda r: [r], batch) == ("passthrough", None)
    assert weir.output(batch, batch) == ("passthrough", None)
    assert weir.output(batch, iter(list(batch))) == ("passthrough", None)
    # Reading fields changes nothing.
    assert run(lambda r: (r.value, r.headers, r.topic, r.key, r)[-1], batch) == ("passthrough", None)
    empty = weir.Batch(weir.EMPTY)
    assert run(lambda r: r, empty) == ("passthrough", None)


def test_kept_dropped_reordered_or_repeated_records_are_a_select():
    batch = sample_batch()
    assert run(lambda r: r if r.index % 2 == 0 else None, batch) == ("select", [0, 2, 4])
    assert run(lambda r: None, batch) == ("select", [])
    assert run(lambda r: [r, r], batch) == ("select", [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    assert weir.output(batch, list(reversed(batch))) == ("select", [5, 4, 3, 2, 1, 0])
    assert weir.output(batch, [batch[0]] * 3) == ("select", [0, 0, 0])
    assert weir.output(batch, []) == ("select", [])


def test_changed_or_new_records_are_a_replace():
    batch = sample_batch()

    def upper(r):
        r.value = r.value.upper()
        return r

    kind, payload = run(upper, batch)
    assert kind == "replace"
    assert [r.value for r in weir.Batch(payload)] == [b'{"N":%d}' % i for i in range(6)]
    kind, payload = run(lambda r: [r, weir.record(value=b"extra", topic="other")] if r.index == 1 else r, batch)
    assert kind == "replace"
    out = weir.Batch(payload)
    assert [(r.key, r.value, r.topic) for r in out][1:3] == [(b"k1", b'{"n":1}', "orders"), (None, b"extra", "other")]
    assert [(r.timestamp, r.partition, r.offset, r.headers) for r in out][0] == (1, 0, 100, [("h", b"0")])
    # A record of another batch is copied.
    other = sample_batch(2)
    kind, payload = weir.output(batch, [batch[0], other[1]])
    assert kind == "replace"
    assert [r.key for r in weir.Batch(payload)] == [b"k0", b"k1"]
    # A batch's bytes, as they are.
    assert weir.output(batch, weir.EMPTY) == ("replace", weir.EMPTY)


def test_added_headers_reuse_the_input_arena_and_keep_every_field():
    batch = sample_batch()

    def tag(r):
        r.add_header("processed", "weir")
        if r.index == 3:
            r.timestamp, r.partition, r.offset = 99, 5, 7
        return r

    kind, payload = run(tag, batch)
    assert kind == "replace"
    out = weir.Batch(payload)
    assert payload[out._do:].startswith(batch.buffer[batch._do:])  # the input's arena, whole
    expected = [fields(r) for r in sample_batch()]
    for i, r in enumerate(expected):
        r["headers"].append(("processed", b"weir"))
    expected[3].update(timestamp=99, partition=5, offset=7)
    assert [fields(r) for r in out] == expected


def test_headers_added_to_some_records_in_place_leave_the_others_as_they_were():
    batch = weir.Batch(build([dict(key=b"k%d" % i, value=b"v%d" % i, topic="t",
                                   headers=[("h%d" % j, b"%d" % j) for j in range(i % 3)])
                              for i in range(5)]))

    def tag(r):
        if r.index == 1:
            r.add_header("null", None)
            r.add_header("empty", b"")
        if r.index == 4:
            r.add_header("é", "ü")
            r.offset = 7
        return r

    kind, payload = run(tag, batch)
    assert kind == "replace"
    out = weir.Batch(payload)  # checked: every entry, the unreferenced runs too
    expected = [fields(r) for r in batch]
    expected[1]["headers"] += [("null", None), ("empty", b"")]
    expected[4]["headers"] += [("é", "ü".encode())]
    expected[4]["offset"] = 7
    assert [fields(r) for r in out] == expected
    # Records 1 and 4 (one header each) get new runs of 3 and 2 entries; the others keep theirs.
    assert (batch._hn, out._hn) == (4, 4 + 3 + 2)


def test_no_bytes_of_dropped_or_replaced_values_leave_in_a_new_batch():
    batch = weir.Batch(build([dict(value=b"secret-%d" % i, topic="t") for i in range(4)]))

    def redact(r):
        if r.index == 0:
            return None
        r.value = b"xxx"
        return r

    kind, payload = run(redact, batch)
    assert kind == "replace" and b"secret" not in payload
    # Headers added to only some of the records (one dropped): copied, not shared.
    kind, payload = run(lambda r: None if r.index == 0 else (r.add_header("h", None), r)[1], batch)
    assert kind == "replace" and b"secret-0" not in payload
    assert [r.value for r in weir.Batch(payload)] == [b"secret-1", b"secret-2", b"secret-3"]


def test_a_bug_in_transform_names_the_record_and_keeps_the_cause():
    def buggy(r):
        if r.index == 2:
            return {}["missing"]
        return r

    with pytest.raises(weir.RecordFailed) as e:
        run(buggy, sample_batch())
    assert str(e.value) == "transform raised KeyError at record 2 of the batch (index from 0): 'missing'"
    assert isinstance(e.value.__cause__, KeyError)
    assert not isinstance(e.value, weir.Error)  # a bug traps; it is not the contract's error

    def refuses(r):
        raise weir.BadRecord(r.index, "no")

    with pytest.raises(weir.BadRecord):  # the contract's errors go through as they are
        run(refuses, sample_batch())


def test_a_transform_must_return_records():
    batch = sample_batch()
    with pytest.raises(TypeError, match="weir.Record objects, not str"):
        run(lambda r: ["x"], batch)
    with pytest.raises(TypeError, match="apply returned None"):
        weir.output(batch, None)
    with pytest.raises(TypeError, match="expected a weir.Record"):
        weir.Builder().append_record({"value": b"x"})


def test_headers_can_be_replaced_and_added_to():
    r = sample_batch()[2]
    r.add_header("a", b"1")
    assert r.headers == [("h", b"2"), ("a", b"1")]
    r.headers = [("x", "y")]
    r.add_header("z", None)
    assert r.headers == [("x", b"y"), ("z", None)]
    r = weir.record(headers=[("a", b"1")])
    r.add_header("a", b"2")
    assert r.headers == [("a", b"1"), ("a", b"2")] and r.index is None


# --- The exported classes, through stub/ ------------------------------------------------------

def err(exc_info):
    assert isinstance(exc_info.value, Err)
    return exc_info.value.value


def test_transformer_answers_with_the_outputs_of_the_contract():
    class Every(weir.Transform):
        name, description = "every", "keeps some"
        config_keys = [weir.key("n", "keep every n-th", type="int", default="2"),
                       weir.key("secret", type="password", required=True, secret=True)]

        def open(self, config):
            self.n = int(config.get("n", "2"))

        def transform(self, record):
            if record.index == 5:
                record.value = b"changed"
            return record if record.index % self.n == 0 else None

    T = weir.transformer(Every)
    assert T.__name__ == "Transformer"
    assert T().describe() == t.Descriptor(
        name="every", version="0.1.0", kind=t.PluginKind.TRANSFORM, description="keeps some",
        config=[t.ConfigKey(name="n", type=t.ConfigType.INT, default_value="2", documentation="keep every n-th",
                            required=False, secret=False),
                t.ConfigKey(name="secret", type=t.ConfigType.PASSWORD, default_value=None, documentation="",
                            required=True, secret=True)])
    assert T().validate([]) == []
    T().open([("n", "1")])
    buf = sample_batch(5).buffer
    assert T().apply(buf) == t.Output_Passthrough()
    T().open([("n", "2")])
    assert T().apply(buf) == t.Output_Select([0, 2, 4])
    T().open([("n", "5")])
    out = T().apply(sample_batch(6).buffer)
    assert isinstance(out, t.Output_Replace)
    assert [r.value for r in weir.Batch(out.value)] == [b'{"n":0}', b"changed"]


def test_errors_become_the_contracts_error_variant():
    class Failing(weir.Transform):
        def open(self, config):
            if "bad" in config:
                raise weir.InvalidConfig("bad", "must not be set")

        def transform(self, record):
            what = record.value
            if what == b"bad":
                raise weir.BadRecord(record.index, "cannot handle it")
            if what == b"retry":
                raise weir.Retriable("database restarting")
            if what == b"stop":
                raise weir.Fatal("gone")
            if what == b"bug":
                raise KeyError("bug")
            return record

        def validate(self, config):
            return [weir.InvalidConfig("a", "needs b"), ("c", "too big")] if "a" in config else []

    T = weir.transformer(Failing)
    with pytest.raises(Err) as e:
        T().open([("bad", "1")])
    assert err(e) == t.Error_InvalidConfig(t.ConfigError(key="bad", message="must not be set"))
    T().open([])
    for value, expected in [
        (b"bad", t.Error_BadRecord(t.BadRecord(index=1, message="cannot handle it"))),
        (b"retry", t.Error_Retriable("database restarting")),
        (b"stop", t.Error_Fatal("gone")),
    ]:
        with pytest.raises(Err) as e:
            T().apply(build([dict(value=b"ok"), dict(value=value)]))
        assert err(e) == expected
    with pytest.raises(weir.RecordFailed, match="KeyError at record 0"):  # a bug traps: the
        T().apply(build([dict(value=b"bug")]))  # host reports the traceback
    with pytest.raises(ValueError, match="magic"):  # so does a batch that breaks the layout
        T().apply(b"x" * 40)
    assert T().validate([("a", "1")]) == [t.ConfigError(key="a", message="needs b"),
                                          t.ConfigError(key="c", message="too big")]
    assert T().describe().name == "Failing"


def test_one_instance_serves_the_task_whatever_componentize_py_instantiates():
    class Counting(weir.Transform):
        def open(self, config):
            self.seen = 0

        def apply(self, batch):
            self.seen += len(batch)
            return [weir.record(value=b"%d" % self.seen)]

    T = weir.transformer(Counting)
    T().open([])
    T().apply(sample_batch(2).buffer)
    out = T().apply(sample_batch(3).buffer)
    assert [r.value for r in weir.Batch(out.value)] == [b"5"]
    T().open([])  # a new task (or a new instance after recycling) starts afresh
    out = T().apply(sample_batch(1).buffer)
    assert [r.value for r in weir.Batch(out.value)] == [b"1"]


def test_source_polls_records_builders_or_nothing():
    class Src(weir.Source):
        def open(self, config, committed):
            self.committed = committed

        def task_configs(self, config, max_tasks):
            return [dict(config, task=str(i)) for i in range(max_tasks)]

        def poll(self, max_records):
            if max_records == 0:
                return None
            if max_records == 1:
                b = weir.Builder()
                b.append(value=b"built", source_offset=b"1")
                return b
            return (weir.record(value=b"%d" % i, source_partition=b"p", source_offset=b"%d" % i)
                    for i in range(max_records))

    S = weir.source(Src)
    assert S().describe().kind == t.PluginKind.SOURCE
    assert S().task_configs([("a", "1")], 2) == [[("a", "1"), ("task", "0")], [("a", "1"), ("task", "1")]]
    S().open([], [(b"p", b"3")])
    assert S().poll(0) == weir.EMPTY
    assert [r.value for r in weir.Batch(S().poll(1))] == [b"built"]
    assert [(r.value, r.source_offset) for r in weir.Batch(S().poll(3))] == [(b"0", b"0"), (b"1", b"1"), (b"2", b"2")]
    S().ack([(b"p", b"2")])
    S().close()


def test_sink_gets_batches_and_positions():
    got = []

    class Snk(weir.Sink):
        def open(self, config, committed):
            got.append(committed)

        def put(self, batch):
            got.append([(r.topic, r.partition, r.offset) for r in batch])

        def flush(self, up_to):
            got.append(up_to)
            return [p for p in up_to if p.topic == "a"] if len(up_to) > 1 else None

    S = weir.sink(Snk)
    assert S().describe().kind == t.PluginKind.SINK
    assert S().task_configs([("a", "1")], 4) == [[("a", "1")]]
    S().open([], [t.LogPosition(topic="a", partition=0, offset=5)])
    assert got.pop() == [weir.Position("a", 0, 5)]
    S().put(sample_batch(2).buffer)
    assert got.pop() == [("orders", 0, 100), ("orders", 1, 101)]
    asked = [t.LogPosition(topic="a", partition=0, offset=9), t.LogPosition(topic="b", partition=1, offset=3)]
    assert S().flush(asked) == asked[:1]
    assert S().flush(asked[1:]) == asked[1:]  # None: everything asked is durable
    S().close()


def test_log_reaches_the_host(host):
    weir.log("hello")
    weir.log("careful", "warn")
    from wit_world.imports.log import Level

    assert host[0] == [(Level.INFO, "hello"), (Level.WARN, "careful")]


# --- The examples, as tests/e2e/test_plugin_worlds.py runs them through the host -----------------

def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}",
                                                  ROOT / "examples" / "python" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_identity():
    T = example("identity").Transformer
    assert T().describe().name == "identity" and T().describe().version == "0.2.0"
    T().open([])
    records = [dict(key=b"k0", value=b'{"a":1}', headers=[("h", b"v"), ("empty", None)], timestamp=1700000000000),
               dict(key=None, value=b"plain text", timestamp=5),
               dict(key=b"k2", value=None, headers=[("h", b"v2")], timestamp=7)]
    assert T().apply(build(records)) == t.Output_Passthrough()


def test_example_json_rewrite():
    T = example("json-rewrite").Transformer
    T().open([("from", "name"), ("to", "full_name")])
    out = T().apply(build([dict(key=b"a", value=b'{"name":"ada","age":36}', timestamp=1),
                           dict(key=b"b", value=b'{"age":1,"name":"bob","name":"twice"}', timestamp=2),
                           dict(key=b"c", value=None, timestamp=3)]))
    assert [(r.key, r.value, r.timestamp) for r in weir.Batch(out.value)] == [
        (b"a", b'{"full_name":"ada","age":36}', 1),
        (b"b", b'{"age":1,"full_name":"bob","name":"twice"}', 2),
        (b"c", None, 3)]
    assert T().apply(build([dict(value=b'{"other":1}'), dict(value=None)])) == t.Output_Passthrough()
    with pytest.raises(Err) as e:
        T().apply(build([dict(key=b"a", value=b'{"name":"ada"}'), dict(key=b"x", value=b"[1,2]")]))
    assert err(e) == t.Error_BadRecord(t.BadRecord(index=1, message="value is not a JSON object"))
    with pytest.raises(Err) as e:
        T().open([("from", "name")])
    assert err(e) == t.Error_InvalidConfig(t.ConfigError(key="to", message="required"))
    assert [k.name for k in T().describe().config] == ["from", "to"]


def test_example_filter_and_add_header():
    F = example("filter").Transformer
    F().open([])
    assert F().apply(sample_batch(5).buffer) == t.Output_Select([0, 2, 4])
    A = example("add-header").Transformer
    A().open([])
    out = A().apply(sample_batch(3).buffer)
    assert [r.headers for r in weir.Batch(out.value)] == [[("h", b"%d" % i), ("processed", b"weir")] for i in range(3)]


def counter(i, topic="numbers"):
    return dict(topic=topic, key=b"k%d" % i, value=b'{"n":%d}' % i, headers=[("source", b"counter")],
                timestamp=1700000000000 + i, source_partition=b"counter", source_offset=b"%d" % i)


def poll_all(S, batch_size):
    records = []
    while True:
        batch = weir.Batch(S().poll(batch_size))
        if not len(batch):
            return records
        records += [{f: getattr(r, f) for f in counter(0)} for r in batch]
        assert all(r.partition == -1 and r.offset == -1 for r in batch)
        S().ack([(batch[-1].source_partition, batch[-1].source_offset)])


def test_example_counter_source(host):
    S = example("counter-source").Source
    assert S().describe().kind == t.PluginKind.SOURCE
    S().open([("topic", "numbers"), ("count", "5")], [])
    assert poll_all(S, 2) == [counter(i) for i in range(5)]
    assert [m for _, m in host[0]] == ["acked 1", "acked 3", "acked 4"]
    assert host[1] == {"acked": b"4"}
    S().close()
    assert host[0][-1][1] == "closed"
    S().open([("topic", "numbers"), ("count", "5")], [(b"counter", b"2")])
    assert poll_all(S, 100) == [counter(3), counter(4)]
    S().open([("topic", "numbers"), ("count", "5")], [(b"counter", b"x")])  # not a number: from 0
    assert len(poll_all(S, 100)) == 5
    with pytest.raises(Err) as e:
        S().open([("topic", "numbers"), ("count", "many")], [])
    assert err(e) == t.Error_InvalidConfig(t.ConfigError(key="count", message="not an integer"))
    assert S().task_configs([("topic", "x")], 3) == [[("topic", "x")]]


def test_example_counter_source_logs_a_state_refusal(host, monkeypatch):
    from wit_world.imports import log, state

    def refuse(key, value):
        raise Err("state is full")

    monkeypatch.setattr(state, "set", refuse)
    S = example("counter-source").Source
    S().open([("topic", "numbers")], [])
    S().ack([(b"counter", b"1")])
    assert host[0] == [(log.Level.INFO, "acked 1"), (log.Level.WARN, "state is full")]


def test_example_file_sink(tmp_path, host):
    S = example("file-sink").Sink
    path = tmp_path / "records.txt"
    S().open([("path", str(path))], [t.LogPosition("orders", 1, 9)])
    assert [m for _, m in host[0]] == ["resuming after orders/1/9"]
    records = [dict(topic="orders", partition=1, offset=10, key=b"k0", value=b"v0", timestamp=1),
               dict(topic="orders", partition=1, offset=11, key=b"k1", value=b"v1", timestamp=2),
               dict(topic="orders", partition=0, offset=3, key=None, value=b"v2", timestamp=3)]
    S().put(build(records[:2]))
    S().put(build(records[2:]))
    assert not path.exists()  # put only buffers
    asked = [t.LogPosition("orders", 0, 3), t.LogPosition("orders", 1, 11)]
    assert S().flush(asked) == asked
    assert path.read_text() == "orders/1/10 k0 v0\norders/1/11 k1 v1\norders/0/3 - v2\n"
    # A record without a position is refused by index, and nothing of its batch is buffered.
    second = tmp_path / "second.txt"
    S().open([("path", str(second))], [])
    for bad in (dict(key=b"x", value=b"y", timestamp=4), dict(topic="t", partition=-1, offset=5)):
        with pytest.raises(Err) as e:
            S().put(build([records[0], bad]))
        assert err(e) == t.Error_BadRecord(t.BadRecord(index=1, message="record has no position"))
    S().flush([])
    assert second.read_text() == ""
    # A write that fails is retriable, and the lines stay buffered for the retry.
    S().open([("path", str(tmp_path / "missing" / "x.txt"))], [])
    S().put(build(records[:1]))
    with pytest.raises(Err) as e:
        S().flush(asked)
    assert isinstance(err(e), t.Error_Retriable) and "No such file or directory" in err(e).value
    (tmp_path / "missing").mkdir()
    S().flush(asked)
    assert (tmp_path / "missing" / "x.txt").read_text() == "orders/1/10 k0 v0\n"
    with pytest.raises(Err) as e:
        S().open([], [])
    assert err(e) == t.Error_InvalidConfig(t.ConfigError(key="path", message="required"))


# --- The stub against the bindings componentize-py really generates -----------------------------

DUMP = r"""
import dataclasses, enum, inspect, json, sys
from wit_world.imports import types
from wit_world import exports
out = {}
for name, value in vars(types).items():
    if getattr(value, "__module__", None) != types.__name__:
        continue
    if dataclasses.is_dataclass(value):
        out[name] = ["dataclass", [f.name for f in dataclasses.fields(value)]]
    elif isinstance(value, type) and issubclass(value, enum.Enum) and value is not enum.Enum:
        out[name] = ["enum", [[m.name, m.value] for m in value]]
for name in ("Transformer", "Source", "Sink"):
    cls = getattr(exports, name, None)
    if cls is not None:
        out["exports." + name] = sorted(
            [m, list(inspect.signature(f).parameters)] for m, f in vars(cls).items() if callable(f) and not m.startswith("_"))
json.dump(out, sys.stdout)
"""


def componentize_py():
    venv = Path(os.environ.get("WEIR_PLUGIN_VENV", "/var/cache/weir/venv-plugins"))
    return shutil.which("componentize-py") or next(
        (str(p) for p in [venv / "bin" / "componentize-py"] if p.exists()), None)


def dump(path):
    r = subprocess.run([sys.executable, "-c", DUMP], env=dict(os.environ, PYTHONPATH=str(path)),
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


@pytest.mark.skipif(componentize_py() is None, reason="componentize-py is not installed")
@pytest.mark.parametrize("world", ["transform", "source-connector", "sink-connector"])
def test_stub_matches_generated_bindings(world, tmp_path):
    subprocess.run([componentize_py(), "-d", str(ROOT / "wit"), "-w", world, "bindings", str(tmp_path)],
                   check=True, capture_output=True)
    generated, stub = dump(tmp_path), dump(HERE / "stub")
    assert generated == {k: v for k, v in stub.items() if k in generated}
    assert any(k.startswith("exports.") for k in generated)
