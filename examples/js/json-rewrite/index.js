// json-rewrite: renames one top-level JSON field (`from` -> `to`) with a byte-level rewrite.
//
// A record whose value is not a JSON object (its first byte is not `{`) is reported as a bad
// record by its index; a record without a value is left alone. No JSON parsing: only the
// first occurrence of `"<from>":` is replaced by `"<to>":`.

// The QuickJS runtime has no TextEncoder: UTF-8 through the URI functions.
function utf8(text) {
  const binary = unescape(encodeURIComponent(text));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// The index of the first occurrence of `needle` in `haystack`, or -1.
function find(haystack, needle) {
  const n = needle.length;
  const first = needle[0];
  const last = haystack.length - n;
  for (let i = haystack.indexOf(first); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    let j = 1;
    while (j < n && haystack[i + j] === needle[j]) j++;
    if (j === n) return i;
  }
  return -1;
}

function key(name, documentation) {
  return { name, type: "string", defaultValue: undefined, documentation, required: true, secret: false };
}

function get(config, name) {
  for (const [k, v] of config) if (k === name) return v;
  return undefined;
}

function invalidConfig(key, message) {
  return { tag: "invalid-config", val: { key, message } };
}

let from = new Uint8Array(0);
let to = new Uint8Array(0);

export const transformer = {
  describe() {
    return {
      name: "json-rewrite",
      version: "0.1.0",
      kind: "transform",
      description: "Renames a top-level JSON field",
      config: [key("from", "field to rename"), key("to", "its new name")],
    };
  },

  open(config) {
    const source = get(config, "from");
    if (source === undefined) throw invalidConfig("from", "required");
    const target = get(config, "to");
    if (target === undefined) throw invalidConfig("to", "required");
    from = utf8(`"${source}":`);
    to = utf8(`"${target}":`);
  },

  apply(batch) {
    for (let i = 0; i < batch.length; i++) {
      const record = batch[i];
      const value = record.value;
      if (value === undefined || value === null) continue;
      if (value.length === 0 || value[0] !== 0x7b /* { */) {
        throw { tag: "bad-record", val: { index: i, message: "value is not a JSON object" } };
      }
      const at = find(value, from);
      if (at === -1) continue;
      const out = new Uint8Array(value.length - from.length + to.length);
      out.set(value.subarray(0, at), 0);
      out.set(to, at);
      out.set(value.subarray(at + from.length), at + to.length);
      record.value = out;
    }
    return batch;
  },
};
