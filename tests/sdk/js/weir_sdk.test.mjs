// Tests of the JavaScript SDK (sdk/js/weir.js): run with `node --test tests/sdk/js/`.
//
// Round trips of random batches, checked against an independent decoder written here from
// wit/BATCH.md; every validation rule refused with its field named; the passthrough / select /
// replace choice of the transform glue; the source and sink glue; UTF-8 against node's own
// codecs; and golden bytes (tests/sdk/golden-batch.md when present, and a batch built by hand
// here from BATCH.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import {
  Batch, Builder, Record, BadRecord, InvalidConfig, Retriable, Fatal, utf8, text, emptyBatch,
  defineTransform, defineSource, defineSink, configValue, configKey,
} from "../../../sdk/js/weir.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NULL = 0xffffffff;

// ------------------------------------------------------------------------------ helpers

// mulberry32: a small seeded PRNG, so failures reproduce.
function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOPICS = ["", "orders", "日本語のトピック", "émoji-😀", "orders"];
const NAMES = ["h", "h", "content-type", "ünïcode", "😀", ""];

function randomBytes(rng, max) {
  const n = Math.floor(rng() * max);
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * 256));
}

// A field: null, empty, binary, or a string (ASCII or not).
function randomField(rng) {
  const k = Math.floor(rng() * 5);
  if (k === 0) return null;
  if (k === 1) return new Uint8Array(0);
  if (k === 2) return randomBytes(rng, 40);
  if (k === 3) return "text-" + Math.floor(rng() * 1e6);
  return "ünï-" + String.fromCodePoint(0x1f600 + Math.floor(rng() * 50));
}

function randomRecord(rng) {
  const headers = [];
  for (let h = Math.floor(rng() * 4); h > 0; h--) {
    headers.push([NAMES[Math.floor(rng() * NAMES.length)], rng() < 0.2 ? null : randomField(rng) ?? ""]);
  }
  const big = () => Math.floor((rng() - 0.3) * 2 ** 45);
  return {
    key: randomField(rng),
    value: randomField(rng),
    headers,
    timestamp: big(),
    topic: TOPICS[Math.floor(rng() * TOPICS.length)],
    partition: Math.floor(rng() * 12) - 1,
    offset: big(),
    sourcePartition: randomField(rng),
    sourceOffset: randomField(rng),
  };
}

const asBytes = (v) => (v === null || v === undefined ? null : typeof v === "string" ? new Uint8Array(Buffer.from(v, "utf8")) : new Uint8Array(v));

// What a record must read back as.
function expected(r) {
  return {
    key: asBytes(r.key),
    value: asBytes(r.value),
    headers: (r.headers ?? []).map(([n, v]) => [n, asBytes(v)]),
    timestamp: r.timestamp ?? 0,
    topic: r.topic ?? "",
    partition: r.partition ?? -1,
    offset: r.offset ?? -1,
    sourcePartition: asBytes(r.sourcePartition),
    sourceOffset: asBytes(r.sourceOffset),
  };
}

// A record view read through the SDK, as plain data.
function viewed(v) {
  const copy = (b) => (b === null ? null : new Uint8Array(b));
  return {
    key: copy(v.key),
    value: copy(v.value),
    headers: v.headers.map(([n, b]) => [n, copy(b)]),
    timestamp: v.timestamp,
    topic: v.topic,
    partition: v.partition,
    offset: v.offset,
    sourcePartition: copy(v.sourcePartition),
    sourceOffset: copy(v.sourceOffset),
  };
}

// An independent decoder, written from BATCH.md with node's Buffer, trusting the bytes.
function reference(bytes) {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  assert.equal(b.toString("latin1", 0, 4), "WRB1");
  const count = b.readUInt32LE(8), rs = b.readUInt16LE(12), hs = b.readUInt16LE(14);
  const rec = b.readUInt32LE(24), hdr = b.readUInt32LE(28), data = b.readUInt32LE(32);
  const range = (p) => {
    const off = b.readUInt32LE(p), len = b.readUInt32LE(p + 4);
    return len === NULL ? null : new Uint8Array(b.subarray(data + off, data + off + len));
  };
  const i64 = (p) => Number(b.readBigInt64LE(p));
  const out = [];
  for (let i = 0; i < count; i++) {
    const p = rec + i * rs, first = b.readUInt32LE(p + 24), n = b.readUInt32LE(p + 28);
    const headers = [];
    for (let h = first; h < first + n; h++) headers.push([Buffer.from(range(hdr + h * hs)).toString("utf8"), range(hdr + h * hs + 8)]);
    out.push({
      key: range(p + 8), value: range(p + 16), headers, timestamp: i64(p),
      topic: Buffer.from(range(p + 32)).toString("utf8"), partition: b.readInt32LE(p + 40), offset: i64(p + 48),
      sourcePartition: range(p + 56), sourceOffset: range(p + 64),
    });
  }
  return out;
}

function build(records) {
  const b = new Builder();
  for (const r of records) b.append(r);
  return b.finish();
}

function randomBatch(seed, n) {
  const rng = prng(seed);
  return Array.from({ length: n }, () => randomRecord(rng));
}

// A small valid batch to corrupt: 3 records, 4 header entries.
function sample() {
  return build([
    { key: "k0", value: "v0", headers: [["a", "1"], ["b", null]], topic: "orders", partition: 1, offset: 10, sourcePartition: "sp", sourceOffset: "so" },
    { key: null, value: "v1", headers: [["c", "3"]], topic: "orders", partition: 0, offset: 11 },
    { key: "k2", value: null, headers: [["d", "4"]], topic: "other", partition: 2, offset: 12 },
  ]);
}

function corrupt(edit) {
  const bytes = sample();
  edit(new DataView(bytes.buffer), bytes);
  return bytes;
}

const REC = (i) => 40 + i * 72; // record entry i of sample()
const HDR = (j) => 40 + 3 * 72 + j * 16; // header entry j of sample()
const DATA_LEN = (dv) => dv.getUint32(36, true);

// ------------------------------------------------------------------------------ round trips

test("random batches round-trip through Builder and Batch, and read the same as the reference decoder", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const records = randomBatch(seed, seed % 7 === 0 ? 0 : 1 + (seed % 23));
    const bytes = build(records);
    const batch = new Batch(bytes);
    assert.equal(batch.length, records.length);
    const want = records.map(expected);
    assert.deepEqual(reference(bytes), want, `seed ${seed}: reference decoder`);
    assert.deepEqual(Array.from(batch, viewed), want, `seed ${seed}: views`);
    for (let i = 0; i < records.length; i++) assert.equal(batch.get(i).index, i);
  }
});

test("appendRecord copies views of a base batch and of another batch exactly", () => {
  for (let seed = 100; seed < 120; seed++) {
    const records = randomBatch(seed, 15);
    const batch = new Batch(build(records));
    const rng = prng(seed);
    const picks = Array.from({ length: 20 }, () => Math.floor(rng() * records.length));
    const withBase = new Builder(batch), without = new Builder();
    for (const i of picks) {
      withBase.appendRecord(batch.get(i));
      without.appendRecord(batch.get(i));
    }
    const want = picks.map((i) => expected(records[i]));
    assert.deepEqual(reference(withBase.finish()), want);
    assert.deepEqual(Array.from(new Batch(without.finish()), viewed), want);
  }
});

test("changed views are written with their changes, the rest copied", () => {
  const records = randomBatch(7, 10);
  const batch = new Batch(build(records));
  const b = new Builder(batch);
  const want = [];
  for (const r of batch) {
    const w = expected(records[r.index]);
    if (r.index % 3 === 0) { r.value = "changed ü"; w.value = asBytes("changed ü"); }
    if (r.index % 3 === 1) { r.addHeader("processed", "weir"); r.addHeader("processed", null); w.headers.push(["processed", asBytes("weir")], ["processed", null]); }
    if (r.index === 2) { r.topic = "新"; r.partition = 5; r.offset = -1; r.timestamp = 2 ** 50; r.key = null; r.sourcePartition = "p"; r.sourceOffset = new Uint8Array([0, 255]);
      Object.assign(w, { topic: "新", partition: 5, offset: -1, timestamp: 2 ** 50, key: null, sourcePartition: asBytes("p"), sourceOffset: new Uint8Array([0, 255]) }); }
    if (r.index === 6) { r.key = undefined; r.partition = null; r.offset = undefined; r.topic = null; r.timestamp = null;
      Object.assign(w, { key: null, partition: -1, offset: -1, topic: "", timestamp: 0 }); }
    if (r.index === 5) { r.headers = [["only", "one"]]; r.addHeader("two", "2"); w.headers = [["only", asBytes("one")], ["two", asBytes("2")]]; }
    assert.deepEqual(viewed(r), w, `view ${r.index} reads its changes`);
    b.appendRecord(r);
    want.push(w);
  }
  assert.deepEqual(reference(b.finish()), want);
});

test("an empty batch is the 40-byte header", () => {
  const bytes = emptyBatch();
  assert.equal(bytes.length, 40);
  assert.deepEqual(Array.from(bytes), [
    0x57, 0x52, 0x42, 0x31, 1, 0, 40, 0, 0, 0, 0, 0, 72, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    40, 0, 0, 0, 40, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0,
  ]);
  assert.equal(new Batch(bytes).length, 0);
  assert.deepEqual(new Builder(new Batch(sample())).finish(), bytes);
});

test("a batch need not be aligned, and larger strides and header sizes are read", () => {
  const bytes = sample();
  const shifted = new Uint8Array(bytes.length + 3).subarray(3);
  shifted.set(bytes);
  assert.deepEqual(Array.from(new Batch(shifted), viewed), Array.from(new Batch(bytes), viewed));

  // Re-lay sample() with header_size 48, record_stride 80, header_stride 24 (zero padding).
  const n = 3, hc = 4, dv = new DataView(bytes.buffer);
  const data = bytes.subarray(dv.getUint32(32, true));
  const out = new Uint8Array(48 + n * 80 + hc * 24 + data.length), ov = new DataView(out.buffer);
  out.set(bytes.subarray(0, 40));
  ov.setUint16(6, 48, true); ov.setUint16(12, 80, true); ov.setUint16(14, 24, true);
  ov.setUint32(24, 48, true); ov.setUint32(28, 48 + n * 80, true); ov.setUint32(32, 48 + n * 80 + hc * 24, true);
  for (let i = 0; i < n; i++) out.set(bytes.subarray(REC(i), REC(i) + 72), 48 + i * 80);
  for (let j = 0; j < hc; j++) out.set(bytes.subarray(HDR(j), HDR(j) + 16), 48 + n * 80 + j * 24);
  out.set(data, 48 + n * 80 + hc * 24);
  const wide = new Batch(out);
  assert.deepEqual(Array.from(wide, viewed), Array.from(new Batch(bytes), viewed));
  // Copies of its views are written in version 1 strides.
  const b = new Builder(wide);
  for (const r of wide) b.appendRecord(r);
  const copied = b.finish();
  assert.equal(new DataView(copied.buffer).getUint16(12, true), 72);
  assert.deepEqual(reference(copied), Array.from(wide, viewed));
});

// ------------------------------------------------------------------------------ validation

const REFUSED = [
  ["shorter than the header", () => sample().subarray(0, 39), /batch: 39 bytes, shorter than the 40-byte header/],
  ["truncated arena", () => sample().subarray(0, sample().length - 1), /data_len is \d+, but data_offset \+ data_len must be the buffer's length \(\d+ bytes\)/],
  ["truncated entries", () => sample().subarray(0, 100), /data_len/],
  ["bad magic", () => corrupt((dv) => dv.setUint8(3, 0x32)), /magic is 57 52 42 32, not WRB1/],
  ["version", () => corrupt((dv) => dv.setUint16(4, 2, true)), /version is 2, not 1/],
  ["flags", () => corrupt((dv) => dv.setUint32(20, 1, true)), /flags is 1, not 0/],
  ["header_size small", () => corrupt((dv) => dv.setUint16(6, 32, true)), /header_size is 32/],
  ["header_size odd", () => corrupt((dv) => dv.setUint16(6, 44, true)), /header_size is 44/],
  ["record_stride", () => corrupt((dv) => dv.setUint16(12, 64, true)), /record_stride is 64/],
  ["header_stride", () => corrupt((dv) => dv.setUint16(14, 12, true)), /header_stride is 12/],
  ["records_offset", () => corrupt((dv) => dv.setUint32(24, 48, true)), /records_offset is 48, expected 40/],
  ["record_count", () => corrupt((dv) => dv.setUint32(8, 1000, true)), /headers_offset is 256, expected 72040/],
  ["header_count", () => corrupt((dv) => dv.setUint32(16, 5, true)), /data_offset is 320, expected 336/],
  ["headers_offset", () => corrupt((dv) => dv.setUint32(28, 264, true)), /headers_offset is 264/],
  ["data_offset", () => corrupt((dv) => dv.setUint32(32, 328, true)), /data_offset is 328/],
  ["data_len", () => corrupt((dv) => dv.setUint32(36, DATA_LEN(dv) + 1, true)), /data_len is/],
  ["key past the arena", () => corrupt((dv) => dv.setUint32(REC(0) + 8, DATA_LEN(dv) - 1, true)), /record 0: key \(offset \d+, length 2\) ends past the data arena \(\d+ bytes\)/],
  ["value past the arena", () => corrupt((dv) => dv.setUint32(REC(1) + 20, DATA_LEN(dv) + 1, true)), /record 1: value \(offset \d+, length \d+\) ends past the data arena/],
  ["topic past the arena", () => corrupt((dv) => dv.setUint32(REC(2) + 32, DATA_LEN(dv), true)), /record 2: topic .* ends past the data arena/],
  ["source_partition past the arena", () => corrupt((dv) => dv.setUint32(REC(0) + 56, 1 << 30, true)), /record 0: source_partition .* ends past/],
  ["source_offset past the arena", () => corrupt((dv) => dv.setUint32(REC(0) + 64, 1 << 30, true)), /record 0: source_offset .* ends past/],
  ["offset + length overflowing 32 bits", () => corrupt((dv) => { dv.setUint32(REC(1) + 16, 0xfffffff0, true); dv.setUint32(REC(1) + 20, 0x20, true); }), /record 1: value \(offset 4294967280, length 32\) ends past/],
  ["null with an offset", () => corrupt((dv) => dv.setUint32(REC(1) + 8, 4, true)), /record 1: key is null but its offset is 4, not 0/],
  ["null topic", () => corrupt((dv) => dv.setUint32(REC(1) + 36, NULL, true)), /record 1: topic is null/],
  ["headers past the table", () => corrupt((dv) => dv.setUint32(REC(2) + 24, 4, true)), /record 2: headers \(first 4, count 1\) end past the header table \(4 entries\)/],
  ["header count overflowing", () => corrupt((dv) => dv.setUint32(REC(0) + 28, NULL, true)), /record 0: headers \(first 0, count 4294967295\)/],
  ["reserved", () => corrupt((dv) => dv.setUint32(REC(0) + 44, 7, true)), /record 0: reserved is 7, not 0/],
  ["header name past the arena", () => corrupt((dv) => dv.setUint32(HDR(3) + 4, 1 << 20, true)), /header entry 3: name \(offset \d+, length 1048576\) ends past/],
  ["header value past the arena", () => corrupt((dv) => dv.setUint32(HDR(0) + 8, DATA_LEN(dv), true)), /header entry 0: value .* ends past/],
  ["null header name", () => corrupt((dv) => dv.setUint32(HDR(2) + 4, NULL, true)), /header entry 2: name is null/],
  ["null header value with an offset", () => corrupt((dv) => dv.setUint32(HDR(1) + 8, 1, true)), /header entry 1: value is null but its offset is 1/],
];

for (const [name, make, message] of REFUSED) {
  test(`refused: ${name}`, () => {
    assert.throws(() => new Batch(make()), message);
  });
}

// sample() with record 0's topic or header entry 0's name pointing at `replacement`, appended
// to the arena.
function withBytes(field, replacement) {
  const bytes = sample();
  const out = new Uint8Array(bytes.length + replacement.length), dv = new DataView(out.buffer);
  out.set(bytes);
  out.set(replacement, bytes.length);
  const dlen = DATA_LEN(dv), p = field === "topic" ? REC(0) + 32 : HDR(0);
  dv.setUint32(36, dlen + replacement.length, true);
  dv.setUint32(p, dlen, true);
  dv.setUint32(p + 4, replacement.length, true);
  return out;
}

const NOT_UTF8 = [[0xff], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x61, 0xe2, 0x82], [0x80]];

test("refused: a topic or header name that is not UTF-8 (invalid byte, overlong, surrogate, past U+10FFFF, truncated, stray continuation)", () => {
  for (const bad of NOT_UTF8) {
    assert.throws(() => new Batch(withBytes("topic", bad)), /record 0: topic is not UTF-8/, bad.join(","));
    assert.throws(() => new Batch(withBytes("name", bad)), /header entry 0: name is not UTF-8/, bad.join(","));
  }
  // The same ranges holding valid UTF-8 (4-byte, 3-byte, 2-byte) are accepted.
  assert.equal(new Batch(withBytes("topic", [0xf0, 0x9f, 0x98, 0x80])).get(0).topic, "😀");
  assert.equal(new Batch(withBytes("name", [0xe2, 0x82, 0xac])).get(0).headers[0][0], "€");
});

test("ranges shared by several records or header entries are accepted", () => {
  // The builder writes the name "x" and the topic "t" once; the header value "x" is written.
  const bytes = build([{ headers: [["x", null]], topic: "t" }, { headers: [["x", "x"]], topic: "t" }]);
  assert.equal(bytes.length, 40 + 2 * 72 + 2 * 16 + 3);
  const batch = new Batch(bytes);
  assert.deepEqual(batch.get(1).headers, [["x", utf8("x")]]);
  assert.equal(batch.get(1).topic, "t");
});

// ------------------------------------------------------------------------------ UTF-8

test("utf8() and text() agree with node's own codecs", () => {
  const rng = prng(42);
  const decoder = new TextDecoder("utf-8", { fatal: false });
  for (let n = 0; n < 500; n++) {
    let s = "";
    for (let k = Math.floor(rng() * 20); k > 0; k--) {
      const r = rng();
      s += r < 0.5 ? String.fromCharCode(32 + Math.floor(rng() * 95))
        : r < 0.7 ? String.fromCharCode(0x80 + Math.floor(rng() * 0x780))
        : r < 0.85 ? String.fromCharCode(0x800 + Math.floor(rng() * 0xf000))
        : r < 0.95 ? String.fromCodePoint(0x10000 + Math.floor(rng() * 0xfffff))
        : String.fromCharCode(0xd800 + Math.floor(rng() * 0x800)); // a lone surrogate
    }
    assert.deepEqual(utf8(s), new Uint8Array(Buffer.from(s, "utf8")), JSON.stringify(s));
    const bytes = randomBytes(rng, 30);
    assert.equal(text(bytes), decoder.decode(bytes), bytes.join(","));
    const valid = new Uint8Array(Buffer.from(s, "utf8"));
    assert.equal(text(valid), decoder.decode(valid));
  }
  assert.equal(text(null), null);
  assert.equal(text(new Uint8Array(100000).fill(0x61)).length, 100000);
});

// ------------------------------------------------------------------------------ transform glue

const KEYS = { name: "t", version: "1.2.3", description: "a test", config: [{ name: "from", required: true, doc: "what" }] };

function apply(author, records) {
  const t = defineTransform({ ...KEYS, ...author });
  t.open([]);
  return t.apply(build(records));
}

const THREE = [{ key: "a", value: "1" }, { key: "b", value: "2", headers: [["h", "v"]] }, { key: "c", value: null }];

test("transform: every record back unchanged and in order is passthrough", () => {
  assert.deepEqual(apply({ transform: (r) => r }, THREE), { tag: "passthrough" });
  assert.deepEqual(apply({ transform: (r) => [r] }, THREE), { tag: "passthrough" });
  assert.deepEqual(apply({ apply: (b) => b }, THREE), { tag: "passthrough" });
  assert.deepEqual(apply({ apply: (b) => Array.from(b) }, THREE), { tag: "passthrough" });
  // Reading fields changes nothing.
  assert.deepEqual(apply({ transform: (r) => (r.key, r.value, r.headers, r.text(), r.topic, r) }, THREE), { tag: "passthrough" });
  assert.deepEqual(apply({ transform: (r) => r }, []), { tag: "passthrough" });
});

test("transform: records kept, dropped, reordered or repeated is select", () => {
  const indexes = (out) => (assert.equal(out.tag, "select"), Array.from(out.val));
  assert.deepEqual(indexes(apply({ transform: (r) => (r.index % 2 === 0 ? r : null) }, THREE)), [0, 2]);
  assert.deepEqual(indexes(apply({ transform: () => null }, THREE)), []);
  assert.deepEqual(indexes(apply({ transform: (r) => [r, r] }, THREE)), [0, 0, 1, 1, 2, 2]);
  assert.deepEqual(indexes(apply({ apply: (b) => Array.from(b).reverse() }, THREE)), [2, 1, 0]);
  assert.deepEqual(indexes(apply({ apply: (b) => [b.get(1), null, b.get(1)] }, THREE)), [1, 1]);
});

test("transform: a changed or new record is replace, with the unchanged ones copied", () => {
  const out = apply({
    transform(r) {
      if (r.index === 0) return r;
      if (r.index === 1) { r.addHeader("processed", "weir"); return [r, { key: "new", value: "x", topic: "t" }]; }
      return null;
    },
  }, THREE);
  assert.equal(out.tag, "replace");
  assert.deepEqual(reference(out.val), [
    expected(THREE[0]),
    expected({ ...THREE[1], headers: [["h", "v"], ["processed", "weir"]] }),
    expected({ key: "new", value: "x", topic: "t" }),
  ]);
  const b = new Builder();
  b.append({ value: "built" });
  assert.deepEqual(apply({ apply: () => b }, THREE).tag, "replace");
  assert.deepEqual(apply({ apply: () => emptyBatch() }, THREE), { tag: "replace", val: emptyBatch() });
});

test("transform: errors become the WIT error variant; other exceptions are rethrown (a trap)", () => {
  const thrown = (fn) => { try { fn(); } catch (e) { return e; } assert.fail("did not throw"); };
  assert.deepEqual(thrown(() => apply({ transform: (r) => { if (r.index === 1) throw new BadRecord("no"); return r; } }, THREE)),
    { tag: "bad-record", val: { index: 1, message: "no" } });
  assert.deepEqual(thrown(() => apply({ transform: (r) => { if (r.index === 2) throw new BadRecord(7, "seven"); return r; } }, THREE)),
    { tag: "bad-record", val: { index: 7, message: "seven" } });
  assert.deepEqual(thrown(() => apply({ transform: (r) => r.json() }, [{ value: "{}" }, { value: "{nope" }])).val.index, 1);
  assert.deepEqual(thrown(() => apply({ transform: () => { throw new Retriable("later"); } }, THREE)), { tag: "retriable", val: "later" });
  assert.deepEqual(thrown(() => apply({ transform: () => { throw new Fatal("stop"); } }, THREE)), { tag: "fatal", val: "stop" });
  assert.deepEqual(thrown(() => apply({ transform: () => { throw { tag: "retriable", val: "raw" }; } }, THREE)), { tag: "retriable", val: "raw" });
  assert.ok(thrown(() => apply({ transform: () => { throw new TypeError("bug"); } }, THREE)) instanceof TypeError);
  const t = defineTransform({ transform: (r) => r, open(config) { configValue(config, "from"); } });
  assert.deepEqual(thrown(() => t.open([])), { tag: "invalid-config", val: { key: "from", message: "required" } });
  assert.equal(thrown(() => t.apply(new Uint8Array(10))).tag, "fatal");
});

test("describe, validate and config helpers", () => {
  const t = defineTransform({ ...KEYS, transform: (r) => r });
  assert.deepEqual(t.describe(), {
    name: "t", version: "1.2.3", kind: "transform", description: "a test",
    config: [{ name: "from", type: "string", defaultValue: null, documentation: "what", required: true, secret: false }],
  });
  assert.deepEqual(t.validate([]), []);
  const v = defineTransform({ transform: (r) => r, validate: (c) => (c.length ? [new InvalidConfig("a", "bad a"), { key: "b", message: "bad b" }] : []) });
  assert.deepEqual(v.validate([["a", "1"]]), [{ key: "a", message: "bad a" }, { key: "b", message: "bad b" }]);
  assert.deepEqual(defineTransform({ transform: (r) => r, validate() { throw new InvalidConfig("x", "no"); } }).validate([]), [{ key: "x", message: "no" }]);
  assert.deepEqual(configKey({ name: "n", type: "int", default: "10", secret: true }),
    { name: "n", type: "int", defaultValue: "10", documentation: "", required: false, secret: true });
  assert.equal(configValue([["a", "1"]], "a"), "1");
  assert.equal(configValue([], "a", null), null);
  assert.throws(() => configValue([], "a"), InvalidConfig);
  assert.throws(() => defineTransform({}), /transform\(record\) or apply\(batch\)/);
  assert.throws(() => defineSource({}), /a source needs poll\(\)/);
  assert.throws(() => defineSink({}), /a sink needs put\(\)/);
  assert.throws(() => new Builder().append({ value: 42 }), /a record field must be bytes, a string or null, not 42/);
});

// ------------------------------------------------------------------------------ source and sink glue

test("source: poll's records become a batch; defaults for validate, taskConfigs, ack, close", () => {
  let opened;
  const s = defineSource({
    name: "s",
    open(config, committed) { opened = [config, committed]; },
    poll(max) { return max === 0 ? null : Array.from({ length: max }, (_, i) => ({ value: `{"n":${i}}`, sourcePartition: "p", sourceOffset: String(i) })); },
  });
  assert.equal(s.describe().kind, "source");
  assert.deepEqual(s.validate([["a", "b"]]), []);
  assert.deepEqual(s.taskConfigs([["a", "b"]], 4), [[["a", "b"]]]);
  s.open([["a", "b"]], [[utf8("p"), utf8("3")]]);
  assert.deepEqual(opened[1], [[utf8("p"), utf8("3")]]);
  assert.deepEqual(s.poll(0), emptyBatch());
  const batch = new Batch(s.poll(3));
  assert.deepEqual(Array.from(batch, (r) => [r.text(), text(r.sourceOffset), r.partition, r.offset, r.timestamp, r.topic]),
    [['{"n":0}', "0", -1, -1, 0, ""], ['{"n":1}', "1", -1, -1, 0, ""], ['{"n":2}', "2", -1, -1, 0, ""]]);
  s.ack([]);
  s.close();
});

test("sink: put gets a Batch; flush returns what the sink says is durable, all of upTo by default", () => {
  const seen = [];
  const author = { name: "k", put(batch) { for (const r of batch) seen.push(`${r.topic}/${r.partition}/${r.offset}`); } };
  const k = defineSink(author);
  k.open([], [{ topic: "t", partition: 0, offset: 5 }]);
  k.put(build([{ topic: "t", partition: 0, offset: 6 }, { topic: "t", partition: 1, offset: 0 }]));
  assert.deepEqual(seen, ["t/0/6", "t/1/0"]);
  const upTo = [{ topic: "t", partition: 0, offset: 6 }, { topic: "t", partition: 1, offset: 0 }];
  assert.deepEqual(k.flush(upTo), upTo);
  author.flush = (u) => u.slice(0, 1);
  assert.deepEqual(k.flush(upTo), upTo.slice(0, 1));
  author.put = () => { throw new BadRecord(1, "no position"); };
  assert.throws(() => k.put(emptyBatch()), (e) => e.tag === "bad-record" && e.val.index === 1);
  assert.deepEqual(k.taskConfigs([], 3), [[]]);
});

// ------------------------------------------------------------------------------ golden bytes

// Built by hand from wit/BATCH.md (not by the SDK): two records, one header, the arena in the
// order a simple writer produces it.
//   record 0: key "k", value "{}", header ("h", "v"), timestamp 1700000000000, topic "t",
//             partition 1, offset 2, no source partition or offset
//   record 1: null key, null value, no header, timestamp 0, topic "t" (shared range), partition
//             -1, offset -1, source partition "p", source offset "9"
function handBuilt() {
  const u32 = (n) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24];
  const i64 = (n) => { const lo = n % 2 ** 32, hi = Math.floor(n / 2 ** 32); return [...u32(lo >>> 0), ...u32(hi >>> 0)]; };
  const range = (off, len) => [...u32(off), ...u32(len)];
  const NUL = range(0, NULL);
  // arena: "k" @0, "{}" @1, "h" @3, "v" @4, "t" @5, "p" @6, "9" @7 -> 8 bytes
  const arena = [0x6b, 0x7b, 0x7d, 0x68, 0x76, 0x74, 0x70, 0x39];
  const header = [0x57, 0x52, 0x42, 0x31, 1, 0, 40, 0, ...u32(2), 72, 0, 16, 0, ...u32(1), ...u32(0),
    ...u32(40), ...u32(40 + 144), ...u32(40 + 144 + 16), ...u32(8)];
  const r0 = [...i64(1700000000000), ...range(0, 1), ...range(1, 2), ...range(0, 1), ...range(5, 1),
    ...u32(1), ...u32(0), ...i64(2), ...NUL, ...NUL];
  const r1 = [...i64(0), ...NUL, ...NUL, ...range(1, 0), ...range(5, 1),
    ...u32(0xffffffff), ...u32(0), ...i64(-1), ...range(6, 1), ...range(7, 1)];
  const h0 = [...range(3, 1), ...range(4, 1)];
  return new Uint8Array([...header, ...r0, ...r1, ...h0, ...arena]);
}

const GOLDEN_RECORDS = [
  { key: "k", value: "{}", headers: [["h", "v"]], timestamp: 1700000000000, topic: "t", partition: 1, offset: 2 },
  { key: null, value: null, headers: [], timestamp: 0, topic: "t", partition: -1, offset: -1, sourcePartition: "p", sourceOffset: "9" },
];

test("golden: a batch built by hand from BATCH.md reads as described, and the SDK writes the same bytes", () => {
  const bytes = handBuilt();
  assert.equal(bytes.length, 40 + 2 * 72 + 16 + 8);
  assert.deepEqual(Array.from(new Batch(bytes), viewed), GOLDEN_RECORDS.map(expected));
  // This Builder writes each record's fields in entry order and stores a repeated topic once,
  // which is exactly the hand layout.
  assert.deepEqual(build(GOLDEN_RECORDS), bytes);
});

// tests/sdk/golden-batch.md, shared with the other SDKs: the records of its table, and its
// bytes (the last hex block: "all of it, as one hex string"), which this builder must write
// byte for byte since it follows the canonical arena order described there.
const SHARED = path.join(HERE, "..", "golden-batch.md");
const SHARED_RECORDS = [
  { key: "k1", value: "hello", headers: [["h", "v"], ["n", null]], timestamp: 1700000000000, topic: "t", partition: 2, offset: 7, sourcePartition: null, sourceOffset: null },
  { key: null, value: "", headers: [["h", "é"]], timestamp: 0, topic: "t", partition: -1, offset: -1, sourcePartition: "p", sourceOffset: "9" },
];

test("golden: tests/sdk/golden-batch.md", { skip: !existsSync(SHARED) && "tests/sdk/golden-batch.md is not there" }, () => {
  const blocks = [...readFileSync(SHARED, "utf8").matchAll(/```\n([0-9a-f\s]+)```/g)].map((m) => m[1].replace(/\s+/g, ""));
  const bytes = new Uint8Array(Buffer.from(blocks[blocks.length - 1], "hex"));
  assert.equal(bytes.length, 247);
  assert.deepEqual(blocks.slice(0, -1).join(""), blocks[blocks.length - 1], "the sections add up to the whole");
  assert.deepEqual(Array.from(new Batch(bytes), viewed), SHARED_RECORDS.map(expected));
  assert.deepEqual(reference(bytes), SHARED_RECORDS.map(expected));
  assert.deepEqual(build(SHARED_RECORDS), bytes);
  // Copied view by view onto it as base, and without a base, it reads the same.
  const batch = new Batch(bytes);
  for (const b of [new Builder(batch), new Builder()]) {
    for (const r of batch) b.appendRecord(r);
    assert.deepEqual(reference(b.finish()), SHARED_RECORDS.map(expected));
  }
});
