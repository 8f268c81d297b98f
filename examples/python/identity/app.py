"""identity: a transform that returns every record unchanged (the SDK answers `passthrough`)."""
import weir


class Identity(weir.Transform):
    name, version, description = "identity", "0.2.0", "Returns records unchanged"

    def transform(self, record):
        return record


Transformer = weir.transformer(Identity)
