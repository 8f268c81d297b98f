// identity: a transform that returns every batch unchanged.
export const transformer = {
  describe() {
    return {
      name: "identity",
      version: "0.1.0",
      kind: "transform",
      description: "Returns records unchanged",
      config: [],
    };
  },
  open(config) {},
  apply(batch) {
    return batch;
  },
};
