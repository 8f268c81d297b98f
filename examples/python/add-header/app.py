"""add-header: adds the header `processed: weir` to every record."""
import weir


class AddHeader(weir.Transform):
    name, version, description = "add-header", "0.1.0", "Adds the header processed: weir"

    def transform(self, record):
        record.add_header("processed", b"weir")
        return record


Transformer = weir.transformer(AddHeader)
