"""filter: keeps the records with an even index in their batch (the SDK answers `select` with
their indexes: nothing is copied)."""
import weir


class EveryOther(weir.Transform):
    name, version, description = "filter", "0.2.0", "Keeps every other record"

    def transform(self, record):
        return record if record.index % 2 == 0 else None


Transformer = weir.transformer(EveryOther)
