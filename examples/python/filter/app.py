"""filter: keeps every other record, those at an even index of their batch (the SDK answers
`select`, so no record is copied)."""
import weir


class EveryOther(weir.Transform):
    name, version, description = "filter", "0.1.0", "Keeps the records at even indexes of each batch"

    def transform(self, record):
        return record if record.index % 2 == 0 else None


Transformer = weir.transformer(EveryOther)
