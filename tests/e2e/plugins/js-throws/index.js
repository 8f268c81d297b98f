// A JavaScript transform that throws a TypeError on every batch: the host must fail only this
// task and end the error with the exception's message.
export const transformer = {
  describe() {
    return { name: "js-throws", version: "0.1.0", kind: "transform", description: "Throws", config: [] };
  },
  open(config) {},
  apply(batch) {
    const missing = undefined;
    return missing.length;
  },
};
