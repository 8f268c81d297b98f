// A JavaScript transform that throws a TypeError on every batch: the host must fail only this
// task and end the error with the exception's message.
import { defineTransform } from "../../../../sdk/js/weir.js";

export const transformer = defineTransform({
  name: "js-throws",
  version: "0.2.0",
  description: "Throws",
  apply(batch) {
    const missing = undefined;
    return missing.length;
  },
});
