// add-header: adds the header `processed: weir` to every record (the SDK answers `replace`:
// entries and byte ranges are copied, the new header is written once per batch).
import { defineTransform } from "../../../sdk/js/weir.js";

export const transformer = defineTransform({
  name: "add-header",
  version: "0.2.0",
  description: "Adds a header to every record",
  transform(record) {
    record.addHeader("processed", "weir");
    return record;
  },
});
