"""add-header: adds the header `processed: weir` to every record (the SDK answers `replace`: the
new batch starts with the input's bytes, and only entries and the new header are written)."""
import weir


class AddHeader(weir.Transform):
    name, version, description = "add-header", "0.2.0", "Adds a header to every record"

    def transform(self, record):
        record.add_header("processed", b"weir")
        return record


Transformer = weir.transformer(AddHeader)
