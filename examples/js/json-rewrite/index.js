// json-rewrite: renames one top-level JSON field (`from` -> `to`) with a byte-level rewrite.
//
// A record whose value is not a JSON object (its first byte is not `{`) is reported as a bad
// record by its index; a record without a value is left alone. No JSON parsing: only the
// first occurrence of `"<from>":` is replaced by `"<to>":`.
import { BadRecord, configValue, defineTransform, utf8 } from "../../../sdk/js/weir.js";

// The index of the first occurrence of `needle` in `haystack`, or -1.
function find(haystack, needle) {
  const n = needle.length;
  const last = haystack.length - n;
  for (let i = haystack.indexOf(needle[0]); i !== -1 && i <= last; i = haystack.indexOf(needle[0], i + 1)) {
    let j = 1;
    while (j < n && haystack[i + j] === needle[j]) j++;
    if (j === n) return i;
  }
  return -1;
}

export const transformer = defineTransform({
  name: "json-rewrite",
  version: "0.2.0",
  description: "Renames a top-level JSON field",
  config: [
    { name: "from", type: "string", required: true, doc: "field to rename" },
    { name: "to", type: "string", required: true, doc: "its new name" },
  ],

  open(config) {
    // configValue throws InvalidConfig(key, "required") for a missing key.
    const from = configValue(config, "from");
    const to = configValue(config, "to");
    this.from = utf8(`"${from}":`);
    this.to = utf8(`"${to}":`);
  },

  transform(record) {
    const value = record.value;
    if (value === null) return record;
    if (value.length === 0 || value[0] !== 0x7b /* { */) {
      throw new BadRecord(record.index, "value is not a JSON object");
    }
    const at = find(value, this.from);
    if (at === -1) return record;
    const out = new Uint8Array(value.length - this.from.length + this.to.length);
    out.set(value.subarray(0, at), 0);
    out.set(this.to, at);
    out.set(value.subarray(at + this.from.length), at + this.to.length);
    record.value = out;
    return record;
  },
});
