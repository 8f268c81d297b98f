// A JavaScript transform that throws a TypeError at the second record of a batch: the host
// must fail only this task and end the error with the exception's message, naming the record.
import { defineTransform } from "../../../../sdk/js/weir.js";

export const transformer = defineTransform({
  name: "js-throws",
  version: "0.2.0",
  description: "Throws",
  transform(record) {
    const missing = record.index === 1 ? undefined : [record];
    return missing.length && record;
  },
});
