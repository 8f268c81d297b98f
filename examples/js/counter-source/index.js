// counter-source: a source that emits the numbers [next, count) as JSON records.
//
// Its one source partition is `counter`, and a record's source offset is its number in ASCII
// decimal, so a restarted task resumes after the last committed number.
import log from "weir:connector/log@0.2.2";
import state from "weir:connector/state@0.2.2";
import { InvalidConfig, configValue, defineSource, text, utf8 } from "../../../sdk/js/weir.js";

const BASE_TIMESTAMP = 1700000000000;
// What Rust's `str::parse::<u64>` accepts (short of overflow): an optional `+`, then ASCII
// digits.
const INTEGER = /^\+?[0-9]+$/;
// Encoded once: a string field is encoded for every record (about 0.1 us a character in QuickJS).
const COUNTER = utf8("counter");

let topic = "";
let count = 10;
let next = 0;

export const source = defineSource({
  name: "counter-source",
  version: "0.2.0",
  description: "Counts, resuming where it was stored",
  config: [
    { name: "topic", type: "string", required: true, doc: "topic to write to" },
    { name: "count", type: "int", default: "10", doc: "how many records in all" },
  ],

  open(config, committed) {
    const t = configValue(config, "topic");
    const c = configValue(config, "count", "10");
    if (!INTEGER.test(c)) throw new InvalidConfig("count", "not an integer");
    // Resume after the first committed offset of `counter`; one that is not a number counts
    // as none.
    let n = 0;
    for (const [partition, offset] of committed) {
      if (text(partition) !== "counter") continue;
      const o = text(offset);
      if (INTEGER.test(o)) n = parseInt(o, 10) + 1;
      break;
    }
    topic = t;
    count = parseInt(c, 10);
    next = n;
  },

  // Plain records: strings are written as UTF-8; partition and offset are left to the runtime.
  poll(maxRecords) {
    const end = Math.min(next + maxRecords, count);
    const records = [];
    for (let i = next; i < end; i++) {
      records.push({
        key: "k" + i,
        value: '{"n":' + i + "}",
        headers: [["source", COUNTER]],
        timestamp: BASE_TIMESTAMP + i,
        topic,
        sourcePartition: COUNTER,
        sourceOffset: String(i),
      });
    }
    if (end > next) next = end;
    return records;
  },

  ack(stored) {
    for (const [partition, offset] of stored) {
      if (text(partition) !== "counter") continue;
      log.log("info", "acked " + text(offset));
      try {
        state.set("acked", offset); // a refusal (over the state bounds) throws its reason
      } catch (e) {
        log.log("warn", String(e && e.payload !== undefined ? e.payload : e));
      }
    }
  },

  close() {
    log.log("info", "closed");
  },
});
