// counter-source: a source that emits the numbers [next, count) as JSON records.
//
// Its one source partition is `counter`, and a record's source offset is its number in ASCII
// decimal, so a restarted task resumes after the last committed number.
import log from "weir:connector/log@0.1.0";
import state from "weir:connector/state@0.1.0";

const BASE_TIMESTAMP = 1700000000000;
// What Rust's `str::parse::<u64>` accepts (short of overflow): an optional `+`, then ASCII
// digits.
const INTEGER = /^\+?[0-9]+$/;

// Strings here are ASCII, so one char code is one byte.
function ascii(text) {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function text(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

// `bytes` decoded as UTF-8, each maximal invalid subpart replaced by U+FFFD (like Rust's
// `String::from_utf8_lossy` and Python's `errors="replace"`). The QuickJS runtime has no
// TextDecoder.
function lossyText(bytes) {
  let s = "";
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      s += String.fromCharCode(b);
      i++;
      continue;
    }
    let need = 0;
    let lower = 0x80;
    let upper = 0xbf;
    let cp = 0;
    if (b >= 0xc2 && b <= 0xdf) [need, cp] = [1, b & 0x1f];
    else if (b >= 0xe0 && b <= 0xef) [need, cp, lower, upper] = [2, b & 0x0f, b === 0xe0 ? 0xa0 : 0x80, b === 0xed ? 0x9f : 0xbf];
    else if (b >= 0xf0 && b <= 0xf4) [need, cp, lower, upper] = [3, b & 0x07, b === 0xf0 ? 0x90 : 0x80, b === 0xf4 ? 0x8f : 0xbf];
    let j = i + 1;
    let seen = 0;
    while (seen < need && j < bytes.length && bytes[j] >= lower && bytes[j] <= upper) {
      cp = (cp << 6) | (bytes[j] & 0x3f);
      lower = 0x80;
      upper = 0xbf;
      seen++;
      j++;
    }
    s += need > 0 && seen === need ? String.fromCodePoint(cp) : "\ufffd";
    i = need > 0 ? j : i + 1;
  }
  return s;
}

function isCounter(partition) {
  return partition.length === 7 && text(partition) === "counter";
}

function get(config, name) {
  for (const [k, v] of config) if (k === name) return v;
  return undefined;
}

function invalidConfig(key, message) {
  return { tag: "invalid-config", val: { key, message } };
}

let topic = "";
let count = 10;
let next = 0;

export const source = {
  describe() {
    return {
      name: "counter-source",
      version: "0.1.0",
      kind: "source",
      description: "Counts, resuming where it was stored",
      config: [
        { name: "topic", type: "string", defaultValue: undefined, documentation: "topic to write to", required: true, secret: false },
        { name: "count", type: "int", defaultValue: "10", documentation: "how many records in all", required: false, secret: false },
      ],
    };
  },

  open(config, committed) {
    const t = get(config, "topic");
    if (t === undefined) throw invalidConfig("topic", "required");
    const c = get(config, "count") ?? "10";
    if (!INTEGER.test(c)) throw invalidConfig("count", "not an integer");
    // Resume after the first committed offset of `counter`; one that is not a number counts
    // as none.
    let n = 0;
    for (const [partition, offset] of committed) {
      if (!isCounter(partition)) continue;
      const o = text(offset);
      if (INTEGER.test(o)) n = parseInt(o, 10) + 1;
      break;
    }
    topic = t;
    count = parseInt(c, 10);
    next = n;
  },

  poll(maxRecords) {
    const end = Math.min(next + maxRecords, count);
    const batch = [];
    const partition = ascii("counter");
    for (let i = next; i < end; i++) {
      batch.push({
        key: ascii("k" + i),
        value: ascii('{"n":' + i + "}"),
        headers: [{ name: "source", value: partition }],
        timestamp: BASE_TIMESTAMP + i,
        topic,
        partition: undefined,
        position: undefined,
        sourcePartition: partition,
        sourceOffset: ascii(String(i)),
      });
    }
    if (end > next) next = end;
    return batch;
  },

  ack(stored) {
    for (const [partition, offset] of stored) {
      if (!isCounter(partition)) continue;
      log.log("info", "acked " + lossyText(offset));
      state.set("acked", offset);
    }
  },

  close() {
    log.log("info", "closed");
  },
};
