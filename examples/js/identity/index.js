// identity: a transform that returns every record unchanged (the SDK answers `passthrough`).
import { defineTransform } from "../../../sdk/js/weir.js";

export const transformer = defineTransform({
  name: "identity",
  version: "0.2.0",
  description: "Returns records unchanged",
  transform(record) {
    return record;
  },
});
