// filter: keeps the records with an even index in their batch (the SDK answers `select` with
// their indexes: nothing is copied).
import { defineTransform } from "../../../sdk/js/weir.js";

export const transformer = defineTransform({
  name: "filter",
  version: "0.2.0",
  description: "Keeps every other record",
  transform(record) {
    return record.index % 2 === 0 ? record : null;
  },
});
