// weir.js: the JavaScript SDK for Weir plugins (contract weir:connector@0.2.0).
//
// The model. A batch of records crosses the plugin boundary as ONE Uint8Array in the Weir batch
// layout (wit/BATCH.md): a 40-byte header, fixed-stride record entries, header entries and a
// data arena. `new Batch(bytes)` validates the whole buffer once and then hands out `Record`
// views: a view holds only its batch and entry offset, and decodes a field when it is read
// (`key`/`value` are subarrays of the input, never copies). Assigning a field, or
// `addHeader`, records the change on the view; nothing else is touched.
//
// An author writes a plain object and wraps it:
//
//   export const transformer = defineTransform({ name, version, description, config,
//       transform(record) { return record; } });   // record -> record | null | array
//   export const source = defineSource({ ..., open(config, committed), poll(max) -> records });
//   export const sink = defineSink({ ..., open(config, committed), put(batch), flush(upTo) });
//
// and the glue speaks WIT: for a transform it returns `passthrough` when every record came back
// unchanged and in order, `select` (input indexes) when records were only kept, dropped,
// reordered or repeated, and `replace` with a new batch built by `Builder` otherwise. Sources
// return plain record objects (strings are encoded as UTF-8) and the glue builds the batch.
// Errors: throw `BadRecord`, `InvalidConfig`, `Retriable` or `Fatal`; anything else thrown
// is a bug and traps (componentize-qjs prints its message and stack to stderr).
//
// Plain ES module, no dependencies: QuickJS has no TextEncoder/TextDecoder, so UTF-8 is coded
// here. Integers are read with DataView (a buffer is not guaranteed to be aligned); 64-bit
// fields are JavaScript numbers, exact up to 2^53.

const NULL = 0xffffffff;
const HEADER = 40, RECORD = 72, HEADER_ENTRY = 16;
const TWO32 = 4294967296;

// ---------------------------------------------------------------------------------- UTF-8

// `bytes[start, end)` decoded as UTF-8, or null when it is not valid UTF-8. QuickJS's
// decodeURIComponent is a native, strict decoder (it refuses overlong forms, surrogates and
// truncated sequences), fed with escape()'s %XX form of the bytes.
function decode(bytes, start, end) {
  if (start === end) return "";
  let s = "";
  for (let p = start; p < end; p += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(p, Math.min(end, p + 4096)));
  }
  try {
    return decodeURIComponent(escape(s));
  } catch (e) {
    return null;
  }
}

// Lossy decoding: each maximal invalid subpart becomes U+FFFD (as TextDecoder and Python's
// errors="replace" do).
function decodeLossy(bytes, start, end) {
  const strict = decode(bytes, start, end);
  if (strict !== null) return strict;
  let s = "";
  for (let i = start; i < end; ) {
    const b = bytes[i];
    if (b < 0x80) { s += String.fromCharCode(b); i++; continue; }
    let need = 0, lo = 0x80, hi = 0xbf, cp = 0;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; cp = b & 0x0f; if (b === 0xe0) lo = 0xa0; if (b === 0xed) hi = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; cp = b & 0x07; if (b === 0xf0) lo = 0x90; if (b === 0xf4) hi = 0x8f; }
    let j = i + 1, seen = 0;
    while (seen < need && j < end && bytes[j] >= lo && bytes[j] <= hi) {
      cp = (cp << 6) | (bytes[j] & 0x3f); lo = 0x80; hi = 0xbf; seen++; j++;
    }
    s += need > 0 && seen === need ? String.fromCodePoint(cp) : "\ufffd";
    i = need > 0 ? j : i + 1;
  }
  return s;
}

// Writes `s` as UTF-8 into `a` at `p` (room for 3 bytes per UTF-16 unit); returns the end. A
// lone surrogate becomes U+FFFD.
function encodeInto(s, a, p) {
  for (let i = 0, n = s.length; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) { a[p++] = c; continue; }
    if (c < 0x800) { a[p++] = 0xc0 | (c >> 6); a[p++] = 0x80 | (c & 63); continue; }
    if (c >= 0xd800 && c < 0xe000) {
      const d = s.charCodeAt(i + 1);
      if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++;
        a[p++] = 0xf0 | (c >> 18); a[p++] = 0x80 | ((c >> 12) & 63);
        a[p++] = 0x80 | ((c >> 6) & 63); a[p++] = 0x80 | (c & 63);
        continue;
      }
      c = 0xfffd;
    }
    a[p++] = 0xe0 | (c >> 12); a[p++] = 0x80 | ((c >> 6) & 63); a[p++] = 0x80 | (c & 63);
  }
  return p;
}

/** A string as UTF-8 bytes. */
export function utf8(s) {
  const a = new Uint8Array(s.length * 3);
  return a.slice(0, encodeInto(s, a, 0));
}

/** Bytes (Uint8Array or null) as a string, invalid UTF-8 replaced by U+FFFD; null stays null. */
export function text(bytes) {
  return bytes === null || bytes === undefined ? bytes : decodeLossy(bytes, 0, bytes.length);
}

// A field value as bytes: null/undefined -> null, string -> UTF-8, bytes as they are.
function toBytes(v) {
  return v === null || v === undefined ? null : typeof v === "string" ? utf8(v) : v;
}

function getI64(dv, p) {
  return dv.getUint32(p, true) + dv.getInt32(p + 4, true) * TWO32;
}

function setI64(dv, p, n) {
  const lo = n >>> 0;
  dv.setUint32(p, lo, true);
  dv.setInt32(p + 4, (n - lo) / TWO32, true);
}

// ---------------------------------------------------------------------------------- reader

function fail(message) {
  throw new Error(message);
}

// A bad (offset, length) pair of `what`: null where null is not allowed, null with an offset,
// or past the end of the data arena.
function badRange(what, off, len, dlen, nullable = true) {
  if (len === NULL) fail(nullable ? `${what} is null but its offset is ${off}, not 0` : `${what} is null, which is not allowed`);
  fail(`${what} (offset ${off}, length ${len}) ends past the data arena (${dlen} bytes)`);
}

/** A validated batch: `length`, `get(i)`, iteration over `Record` views. */
export class Batch {
  constructor(bytes) {
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    const n = bytes.length;
    if (n < HEADER) fail(`batch: ${n} bytes, shorter than the ${HEADER}-byte header`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, n);
    if (dv.getUint32(0, false) !== 0x57524231) {
      fail(`batch: magic is ${Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ")}, not WRB1`);
    }
    const field = (name, value, ok, want) => ok || fail(`batch: ${name} is ${value}, ${want}`);
    const version = dv.getUint16(4, true), hsize = dv.getUint16(6, true);
    const count = dv.getUint32(8, true), rs = dv.getUint16(12, true), hs = dv.getUint16(14, true);
    const hc = dv.getUint32(16, true), flags = dv.getUint32(20, true);
    field("version", version, version === 1, "not 1");
    field("flags", flags, flags === 0, "not 0");
    field("header_size", hsize, hsize >= HEADER && hsize % 8 === 0, "not a multiple of 8 >= 40");
    field("record_stride", rs, rs >= RECORD && rs % 8 === 0, "not a multiple of 8 >= 72");
    field("header_stride", hs, hs >= HEADER_ENTRY && hs % 8 === 0, "not a multiple of 8 >= 16");
    const rec = dv.getUint32(24, true), hdr = dv.getUint32(28, true);
    const data = dv.getUint32(32, true), dlen = dv.getUint32(36, true);
    field("records_offset", rec, rec === hsize, `expected ${hsize} (header_size)`);
    const wantHdr = rec + count * rs, wantData = wantHdr + hc * hs;
    field("headers_offset", hdr, hdr === wantHdr, `expected ${wantHdr} for ${count} records`);
    field("data_offset", data, data === wantData, `expected ${wantData} for ${hc} header entries`);
    field("data_len", dlen, data + dlen === n, `but data_offset + data_len must be the buffer's length (${n} bytes)`);

    // Every record, its fields in entry order, inline (this loop is most of a batch's cost).
    // A topic range equal to the previous record's is not decoded again (builders store a
    // repeated topic once); the same for header names.
    let off = 0, len = 0, tOff = -1, tLen = -1;
    for (let i = 0, p = rec; i < count; i++, p += rs) {
      off = dv.getUint32(p + 8, true); len = dv.getUint32(p + 12, true);
      if (len === NULL ? off !== 0 : off + len > dlen) badRange(`record ${i}: key`, off, len, dlen);
      off = dv.getUint32(p + 16, true); len = dv.getUint32(p + 20, true);
      if (len === NULL ? off !== 0 : off + len > dlen) badRange(`record ${i}: value`, off, len, dlen);
      off = dv.getUint32(p + 24, true); len = dv.getUint32(p + 28, true);
      if (off + len > hc) fail(`record ${i}: headers (first ${off}, count ${len}) end past the header table (${hc} entries)`);
      off = dv.getUint32(p + 32, true); len = dv.getUint32(p + 36, true);
      if (len === NULL || off + len > dlen) badRange(`record ${i}: topic`, off, len, dlen, false);
      if ((off !== tOff || len !== tLen) && decode(bytes, data + off, data + off + len) === null) {
        fail(`record ${i}: topic is not UTF-8`);
      }
      tOff = off; tLen = len;
      off = dv.getUint32(p + 44, true);
      if (off !== 0) fail(`record ${i}: reserved is ${off}, not 0`);
      off = dv.getUint32(p + 56, true); len = dv.getUint32(p + 60, true);
      if (len === NULL ? off !== 0 : off + len > dlen) badRange(`record ${i}: source_partition`, off, len, dlen);
      off = dv.getUint32(p + 64, true); len = dv.getUint32(p + 68, true);
      if (len === NULL ? off !== 0 : off + len > dlen) badRange(`record ${i}: source_offset`, off, len, dlen);
    }
    let nOff = -1, nLen = -1;
    for (let j = 0, p = hdr; j < hc; j++, p += hs) {
      const no = dv.getUint32(p, true), nl = dv.getUint32(p + 4, true);
      const vo = dv.getUint32(p + 8, true), vl = dv.getUint32(p + 12, true);
      if (nl === NULL || no + nl > dlen) badRange(`header entry ${j}: name`, no, nl, dlen, false);
      if ((no !== nOff || nl !== nLen) && decode(bytes, data + no, data + no + nl) === null) {
        fail(`header entry ${j}: name is not UTF-8`);
      }
      if (vl === NULL ? vo !== 0 : vo + vl > dlen) badRange(`header entry ${j}: value`, vo, vl, dlen);
      nOff = no; nLen = nl;
    }
    this.bytes = bytes;
    this.length = count;
    this._dv = dv;
    this._rec = rec; this._rs = rs; this._hdr = hdr; this._hs = hs; this._hc = hc; this._data = data; this._dlen = dlen;
    this._strings = new Map();
  }

  /** The record at `i` (a view). */
  get(i) {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`record ${i} of ${this.length}`);
    return new Record(this, this._rec + i * this._rs);
  }

  *[Symbol.iterator]() {
    for (let i = 0; i < this.length; i++) yield new Record(this, this._rec + i * this._rs);
  }

  // The bytes of the (offset, length) pair at `p`, or null.
  _bytes(p) {
    const len = this._dv.getUint32(p + 4, true);
    if (len === NULL) return null;
    const start = this._data + this._dv.getUint32(p, true);
    return this.bytes.subarray(start, start + len);
  }

  // The UTF-8 (validated) string of the pair at `p`: topics and header names, decoded once
  // per batch.
  _text(p) {
    const off = this._dv.getUint32(p, true), len = this._dv.getUint32(p + 4, true);
    const id = off * 65536 + len, seen = len < 65536 ? this._strings.get(id) : undefined;
    if (seen !== undefined) return seen;
    const s = decode(this.bytes, this._data + off, this._data + off + len);
    if (len < 65536) this._strings.set(id, s);
    return s;
  }
}

/**
 * One record of a batch, decoded field by field when read. Assigning a field (bytes, a string
 * or null) or calling `addHeader` marks it changed. Bytes read from it alias the input batch:
 * do not write into them, assign a new value instead.
 */
export class Record {
  constructor(batch, at) {
    this._b = batch;
    this._at = at;
  }

  /** Its index in its batch. */
  get index() { return (this._at - this._b._rec) / this._b._rs; }
  /** True once a field was assigned. */
  get changed() { return this._o !== null; }

  get key() { const o = this._o; return o !== null && o.key !== undefined ? toBytes(o.key) : this._b._bytes(this._at + 8); }
  set key(v) { this._set("key", v); }
  get value() { const o = this._o; return o !== null && o.value !== undefined ? toBytes(o.value) : this._b._bytes(this._at + 16); }
  set value(v) { this._set("value", v); }
  get timestamp() { const o = this._o; return o !== null && o.timestamp !== undefined ? o.timestamp ?? 0 : getI64(this._b._dv, this._at); }
  set timestamp(v) { this._set("timestamp", v); }
  get topic() { const o = this._o; return o !== null && o.topic !== undefined ? o.topic ?? "" : this._b._text(this._at + 32); }
  set topic(v) { this._set("topic", v); }
  get partition() { const o = this._o; return o !== null && o.partition !== undefined ? o.partition ?? -1 : this._b._dv.getInt32(this._at + 40, true); }
  set partition(v) { this._set("partition", v); }
  get offset() { const o = this._o; return o !== null && o.offset !== undefined ? o.offset ?? -1 : getI64(this._b._dv, this._at + 48); }
  set offset(v) { this._set("offset", v); }
  get sourcePartition() { const o = this._o; return o !== null && o.sourcePartition !== undefined ? toBytes(o.sourcePartition) : this._b._bytes(this._at + 56); }
  set sourcePartition(v) { this._set("sourcePartition", v); }
  get sourceOffset() { const o = this._o; return o !== null && o.sourceOffset !== undefined ? toBytes(o.sourceOffset) : this._b._bytes(this._at + 64); }
  set sourceOffset(v) { this._set("sourceOffset", v); }

  /** The headers, in order: an array of [name, value (Uint8Array or null)]. */
  get headers() {
    const o = this._o, out = [];
    if (o === null || o.headers === undefined) {
      const b = this._b, dv = b._dv;
      const first = dv.getUint32(this._at + 24, true), n = dv.getUint32(this._at + 28, true);
      for (let k = 0, p = b._hdr + first * b._hs; k < n; k++, p += b._hs) out.push([b._text(p), b._bytes(p + 8)]);
    }
    const more = o === null ? undefined : o.headers ?? o.extra;
    if (more !== undefined) for (const h of more) out.push([h[0], toBytes(h[1])]);
    return out;
  }
  /** Replaces the headers: [name, value] pairs (or {name, value} objects). */
  set headers(list) { this._set("headers", Array.from(list, (h) => (Array.isArray(h) ? [h[0], h[1]] : [h.name, h.value]))); }
  /** The value of the first header named `name`: bytes, null, or undefined when there is none. */
  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }
  /** Appends a header (a string value is written as UTF-8). */
  addHeader(name, value) {
    const o = this._o === null ? (this._o = {}) : this._o, h = [name, value];
    if (o.headers !== undefined) o.headers.push(h);
    else if (o.extra !== undefined) o.extra.push(h);
    else o.extra = [h];
  }

  /** The value as a string (invalid UTF-8 replaced by U+FFFD), or null. */
  text() { return text(this.value); }
  /** The value parsed as JSON (null for a null value); a value that is not JSON is a BadRecord. */
  json() {
    const s = this.text();
    if (s === null) return null;
    try {
      return JSON.parse(s);
    } catch (e) {
      throw new BadRecord(this.index, `value is not JSON: ${e.message}`);
    }
  }

  _set(name, v) {
    (this._o === null ? (this._o = {}) : this._o)[name] = v === undefined ? null : v;
  }
}
Record.prototype._o = null; // the changes, {field: new value}, made on the first one

// ---------------------------------------------------------------------------------- writer

/**
 * Builds a batch: `append(record)` any number of times, then `finish()`. The arena follows the
 * canonical order of tests/sdk/golden-batch.md: each record's bytes in entry order, a topic or
 * header name written once per batch, everything else written as it comes.
 *
 * With a `base` batch (what the transform glue uses), `appendRecord(view)` of the base's views
 * copies no bytes of the arena: the base's whole arena is placed at the start of the new one
 * (and string header values are written once too). Its entries and header table are copied up
 * front, so a record appended at its own position (a map-like transform, in order) costs only
 * the fields that changed.
 */
export class Builder {
  constructor(base) {
    const b = base instanceof Batch ? base : null;
    this._base = b;
    this._ab = b === null ? 0 : b._dlen; // arena offset of the bytes written here
    this._n = 0; this._hn = 0; this._len = 0;
    this._ent = new Uint8Array(Math.max(64, b === null ? 0 : b.length) * RECORD);
    this._hdr = new Uint8Array(Math.max(64, b === null ? 0 : b._hc) * HEADER_ENTRY);
    this._ev = new DataView(this._ent.buffer); this._hv = new DataView(this._hdr.buffer);
    this._arena = new Uint8Array(1024);
    this._strings = new Map(); // topic or header name -> [offset, length] in the arena
    this._pre = b !== null && b._rs === RECORD && b._hs === HEADER_ENTRY; // entries copied up front
    if (this._pre) {
      this._ent.set(b.bytes.subarray(b._rec, b._hdr));
      this._hdr.set(b.bytes.subarray(b._hdr, b._data));
    }
  }

  get length() { return this._n; }

  /**
   * Appends a record from a plain object (or a Record): {key, value, headers, timestamp, topic,
   * partition, offset, sourcePartition, sourceOffset}. Bytes are a Uint8Array, a string
   * (UTF-8) or null; headers are [name, value] pairs (or {name, value}); timestamp <= 0 (the
   * default) means the time of the write; partition and offset default to -1, topic to "".
   */
  append(r) {
    const at = this._entry(), v = this._ev;
    setI64(v, at, r.timestamp ?? 0);
    this._put(v, at + 8, r.key, false);
    this._put(v, at + 16, r.value, false);
    v.setUint32(at + 24, this._hn, true);
    v.setUint32(at + 28, this._headers(r.headers ?? []), true);
    this._put(v, at + 32, r.topic ?? "", true);
    v.setInt32(at + 40, r.partition ?? -1, true);
    v.setUint32(at + 44, 0, true);
    setI64(v, at + 48, r.offset ?? -1);
    this._put(v, at + 56, r.sourcePartition, false);
    this._put(v, at + 64, r.sourceOffset, false);
    return this;
  }

  /** Appends a Record view: its entry and byte ranges copied, its changes written. */
  appendRecord(r) {
    const b = r._b;
    if (b !== this._base) return this.append(r); // a plain object, or a view of another batch
    const src = r._at, o = r._o, sv = b._dv, at = this._entry(), v = this._ev;
    if (!this._pre || src - b._rec !== at) this._ent.set(b.bytes.subarray(src, src + RECORD), at);
    let count = 0;
    if (o !== null && o.headers !== undefined) {
      v.setUint32(at + 24, this._hn, true);
      count = this._headers(o.headers);
    } else {
      const first = sv.getUint32(src + 24, true), hn = this._hn;
      count = sv.getUint32(src + 28, true);
      if (!this._pre || first !== hn) { // not already in place: copy its header entries
        v.setUint32(at + 24, hn, true);
        this._room("_hdr", "_hv", (hn + count) * HEADER_ENTRY);
        const p = b._hdr + first * b._hs;
        if (b._hs === HEADER_ENTRY) this._hdr.set(b.bytes.subarray(p, p + count * HEADER_ENTRY), hn * HEADER_ENTRY);
        else for (let k = 0; k < count; k++) this._hdr.set(b.bytes.subarray(p + k * b._hs, p + k * b._hs + HEADER_ENTRY), (hn + k) * HEADER_ENTRY);
      }
      this._hn = hn + count;
      if (o !== null && o.extra !== undefined) count += this._headers(o.extra);
    }
    if (o === null) return this;
    v.setUint32(at + 28, count, true);
    if (o.timestamp !== undefined) setI64(v, at, o.timestamp ?? 0);
    if (o.key !== undefined) this._put(v, at + 8, o.key, false);
    if (o.value !== undefined) this._put(v, at + 16, o.value, false);
    if (o.topic !== undefined) this._put(v, at + 32, o.topic ?? "", true);
    if (o.partition !== undefined) v.setInt32(at + 40, o.partition ?? -1, true);
    if (o.offset !== undefined) setI64(v, at + 48, o.offset ?? -1);
    if (o.sourcePartition !== undefined) this._put(v, at + 56, o.sourcePartition, false);
    if (o.sourceOffset !== undefined) this._put(v, at + 64, o.sourceOffset, false);
    return this;
  }

  /** The batch's bytes. */
  finish() {
    const n = this._n, hn = this._hn;
    const hdr = HEADER + n * RECORD, data = hdr + hn * HEADER_ENTRY;
    const dlen = n === 0 ? 0 : this._ab + this._len;
    if (data + dlen > NULL) throw new RangeError(`batch of ${data + dlen} bytes: the limit is 4 GiB - 1`);
    const out = new Uint8Array(data + dlen), dv = new DataView(out.buffer);
    out.set([0x57, 0x52, 0x42, 0x31]);
    dv.setUint16(4, 1, true); dv.setUint16(6, HEADER, true); dv.setUint32(8, n, true);
    dv.setUint16(12, RECORD, true); dv.setUint16(14, HEADER_ENTRY, true); dv.setUint32(16, hn, true);
    dv.setUint32(24, HEADER, true); dv.setUint32(28, hdr, true); dv.setUint32(32, data, true); dv.setUint32(36, dlen, true);
    if (n === 0) return out;
    out.set(this._ent.subarray(0, n * RECORD), HEADER);
    out.set(this._hdr.subarray(0, hn * HEADER_ENTRY), hdr);
    const b = this._base;
    if (b !== null) out.set(b.bytes.subarray(b._data, b._data + b._dlen), data);
    out.set(this._arena.subarray(0, this._len), data + this._ab);
    return out;
  }

  // Makes buffer `name` (with DataView `view`, if any) at least `size` bytes long, keeping all
  // of its bytes (the entries copied up front included).
  _room(name, view, size) {
    const old = this[name];
    if (size <= old.length) return;
    const next = new Uint8Array(Math.max(old.length * 2, size));
    next.set(old);
    this[name] = next;
    if (view !== null) this[view] = new DataView(next.buffer);
  }

  // The offset of a new record entry.
  _entry() {
    const at = this._n++ * RECORD;
    if (at + RECORD > this._ent.length) this._room("_ent", "_ev", at + RECORD);
    return at;
  }

  // Writes header entries for [name, value] pairs (or {name, value}); returns how many.
  _headers(list) {
    this._room("_hdr", "_hv", (this._hn + list.length) * HEADER_ENTRY);
    for (let k = 0; k < list.length; k++) {
      const h = list[k], pair = Array.isArray(h), p = this._hn++ * HEADER_ENTRY;
      this._put(this._hv, p, pair ? h[0] : h.name, true);
      this._put(this._hv, p + 8, pair ? h[1] : h.value, this._base !== null);
    }
    return list.length;
  }

  // Writes the (offset, length) pair at `p` of `dv` for `v`: null, a string (UTF-8; written
  // once per batch when `shared`: topics and header names), or bytes (bytes of the base's
  // arena are pointed at, not copied).
  _put(dv, p, v, shared) {
    let off = 0, len = NULL;
    if (typeof v === "string") {
      const seen = shared ? this._strings.get(v) : undefined;
      if (seen !== undefined) {
        off = seen[0]; len = seen[1];
      } else {
        if (this._len + v.length * 3 > this._arena.length) this._room("_arena", null, this._len + v.length * 3);
        const end = encodeInto(v, this._arena, this._len);
        off = this._ab + this._len; len = end - this._len; this._len = end;
        if (shared) this._strings.set(v, [off, len]);
      }
    } else if (v !== null && v !== undefined) {
      const b = this._base;
      len = v.length;
      if (typeof len !== "number") throw new TypeError(`a record field must be bytes, a string or null, not ${v}`);
      off = b === null || v.buffer !== b.bytes.buffer ? -1 : v.byteOffset - b.bytes.byteOffset - b._data;
      if (off < 0 || off + len > b._dlen) {
        if (this._len + len > this._arena.length) this._room("_arena", null, this._len + len);
        this._arena.set(v, this._len);
        off = this._ab + this._len; this._len += len;
      }
    }
    dv.setUint32(p, len === 0 ? 0 : off, true); dv.setUint32(p + 4, len, true); // empty: (0, 0)
  }
}

/** The bytes of an empty batch. */
export function emptyBatch() {
  return new Builder().finish();
}

// ---------------------------------------------------------------------------------- errors

/** Base of the errors that map to the WIT `error` variant. */
export class WeirError extends Error {
  toWit() { return { tag: "fatal", val: this.message }; }
}
/** Try the same call again later. */
export class Retriable extends WeirError {
  toWit() { return { tag: "retriable", val: this.message }; }
}
/** Stop the task. */
export class Fatal extends WeirError {}
/** A bad configuration value. */
export class InvalidConfig extends WeirError {
  constructor(key, message) { super(message); this.key = key; }
  toWit() { return { tag: "invalid-config", val: { key: this.key, message: this.message } }; }
}
/** The record at `index` of the batch cannot be handled (from `transform(record)` the index
 *  may be left out: `new BadRecord("message")`). */
export class BadRecord extends WeirError {
  constructor(index, message) {
    if (message === undefined && typeof index === "string") [index, message] = [undefined, index];
    super(message);
    this.index = index;
  }
  toWit() { return { tag: "bad-record", val: { index: this.index, message: this.message } }; }
}

// What to throw across the boundary for `e`: SDK errors and {tag, val} objects become the WIT
// error; anything else is rethrown and traps (a bug).
function wit(e, index) {
  if (e instanceof BadRecord && e.index === undefined) e.index = index ?? 0;
  if (e instanceof WeirError) return e.toWit();
  if (e !== null && typeof e === "object" && !(e instanceof Error) && typeof e.tag === "string") return e;
  // A bug: the trap's message says which record it hit.
  if (index !== undefined && e instanceof Error) {
    e.message += ` (weir: thrown by transform for record ${index} of the batch, index from 0)`;
  }
  throw e;
}

function call(author, name, fallback, ...args) {
  if (typeof author[name] !== "function") return fallback(...args);
  try {
    return author[name](...args);
  } catch (e) {
    throw wit(e);
  }
}

function input(bytes) {
  try {
    return new Batch(bytes);
  } catch (e) {
    throw { tag: "fatal", val: `the host sent a bad batch: ${e.message}` };
  }
}

// ---------------------------------------------------------------------------------- glue

/** A config-key record from {name, type, default|defaultValue, doc|documentation, required, secret}. */
export function configKey(k) {
  return {
    name: k.name, type: k.type ?? "string", defaultValue: k.defaultValue ?? k.default ?? null,
    documentation: k.documentation ?? k.doc ?? "", required: !!k.required, secret: !!k.secret,
  };
}

/** A descriptor from {name, version, description, config} (or the author's own describe()). */
export function descriptor(kind, author) {
  const d = typeof author.describe === "function" ? author.describe() : author;
  return {
    name: d.name, version: d.version ?? "0.1.0", kind, description: d.description ?? "",
    config: (d.config ?? []).map(configKey),
  };
}

/** The value of `name` in a config list; when absent: `fallback` if given, else InvalidConfig. */
export function configValue(config, name, ...fallback) {
  for (const [k, v] of config) if (k === name) return v;
  if (fallback.length > 0) return fallback[0];
  throw new InvalidConfig(name, "required");
}

function validate(author, config) {
  try {
    const errors = typeof author.validate === "function" ? author.validate(config) ?? [] : [];
    return errors.map((e) => ({ key: e.key, message: e.message }));
  } catch (e) {
    if (e instanceof InvalidConfig) return [{ key: e.key, message: e.message }];
    throw wit(e);
  }
}

const PASSTHROUGH = { tag: "passthrough" };

// The WIT output for what a transform returned: the batch itself, an array of records (views
// or plain objects; null entries are dropped), a Builder, bytes, or an output variant.
function output(batch, out) {
  if (out === batch) return PASSTHROUGH;
  if (out instanceof Uint8Array) return { tag: "replace", val: out };
  if (out instanceof Builder) return { tag: "replace", val: out.finish() };
  if (!Array.isArray(out)) {
    if (out !== null && typeof out === "object" && typeof out.tag === "string") return out;
    throw new TypeError("apply must return the batch, an array of records, a Builder or bytes");
  }
  // Unchanged views of `batch` only: passthrough or select; otherwise replace.
  const n = out.length, rec = batch._rec, rs = batch._rs;
  let select = true, inOrder = n === batch.length, kept = 0;
  for (let k = 0; k < n; k++) {
    const r = out[k];
    if (r === null || r === undefined) { inOrder = false; continue; }
    if (r._b !== batch || r._o !== null) { select = false; break; }
    if (r._at !== rec + k * rs) inOrder = false;
    kept++;
  }
  if (select) {
    if (inOrder) return PASSTHROUGH;
    const indexes = new Uint32Array(kept);
    for (let k = 0, j = 0; k < n; k++) if (out[k] !== null && out[k] !== undefined) indexes[j++] = (out[k]._at - rec) / rs;
    return { tag: "select", val: indexes };
  }
  const builder = new Builder(batch);
  for (let k = 0; k < n; k++) if (out[k] !== null && out[k] !== undefined) builder.appendRecord(out[k]);
  return { tag: "replace", val: builder.finish() };
}

/**
 * The `transformer` export for an author object: {name, version, description, config,
 * validate?(config), open?(config), and transform(record, batch) -> record | null | array,
 * or apply(batch) -> batch | array of records | Builder | Uint8Array}.
 */
export function defineTransform(author) {
  const each = author.transform, whole = author.apply;
  if (typeof each !== "function" && typeof whole !== "function") {
    throw new TypeError("a transform needs transform(record) or apply(batch)");
  }
  return {
    describe: () => descriptor("transform", author),
    validate: (config) => validate(author, config),
    open: (config) => { call(author, "open", () => {}, config); },
    apply(bytes) {
      const batch = input(bytes);
      if (typeof whole === "function") {
        let out;
        try {
          out = whole.call(author, batch);
        } catch (e) {
          throw wit(e);
        }
        return output(batch, out);
      }
      const outs = [], n = batch.length, rec = batch._rec, rs = batch._rs;
      for (let i = 0; i < n; i++) {
        let r;
        try {
          r = author.transform(new Record(batch, rec + i * rs), batch);
        } catch (e) {
          throw wit(e, i);
        }
        if (r === null || r === undefined) continue;
        if (Array.isArray(r)) for (let k = 0; k < r.length; k++) outs.push(r[k]);
        else outs.push(r);
      }
      return output(batch, outs);
    },
  };
}

// A batch's bytes from what `poll` returned: records (plain objects or views), a Builder,
// bytes, or nothing (an empty batch).
function build(out) {
  if (out === null || out === undefined) return emptyBatch();
  if (out instanceof Uint8Array) return out;
  if (out instanceof Builder) return out.finish();
  const builder = new Builder();
  for (let k = 0; k < out.length; k++) builder.append(out[k]);
  return builder.finish();
}

// What sources and sinks have in common: describe, validate, taskConfigs (default: the one
// config, a single task), open and close.
function connector(kind, author, required) {
  if (typeof author[required] !== "function") throw new TypeError(`a ${kind} needs ${required}()`);
  return {
    describe: () => descriptor(kind, author),
    validate: (config) => validate(author, config),
    taskConfigs: (config, maxTasks) => call(author, "taskConfigs", (c) => [c], config, maxTasks),
    open: (config, committed) => { call(author, "open", () => {}, config, committed); },
    close: () => { call(author, "close", () => {}); },
  };
}

/**
 * The `source` export for {name, version, description, config, validate?, taskConfigs?,
 * open(config, committed: [[partitionBytes, offsetBytes]]), poll(maxRecords) -> records (plain
 * objects, views, a Builder, bytes or nothing), ack?(stored), close?()}.
 */
export function defineSource(author) {
  return {
    ...connector("source", author, "poll"),
    poll: (maxRecords) => build(call(author, "poll", null, maxRecords)),
    ack: (stored) => { call(author, "ack", () => {}, stored); },
  };
}

/**
 * The `sink` export for {name, version, description, config, validate?, taskConfigs?,
 * open(config, committed: [{topic, partition, offset}]), put(batch: Batch),
 * flush?(upTo) -> the positions now durable (returning nothing means all of upTo), close?()}.
 */
export function defineSink(author) {
  return {
    ...connector("sink", author, "put"),
    put: (bytes) => { call(author, "put", null, input(bytes)); },
    flush: (upTo) => call(author, "flush", () => upTo, upTo) ?? upTo,
  };
}
