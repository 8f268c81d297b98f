"""A Python transform that prints, then raises on a record whose value is one byte long:
the host must fail only this task, log the print, and end the error with the traceback."""
import weir


class Raises(weir.Transform):
    name, version, description = "python-raises", "0.2.0", "Raises"

    def apply(self, batch):
        print(f"python-raises got {len(batch)} records")
        return [r for r in batch if 1 / (len(r.value or b"") - 1)]


Transformer = weir.transformer(Raises)
