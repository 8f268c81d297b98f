"""A Python transform that prints, then raises on a record whose value is one byte long:
the host must fail only this task, log the print, and end the error with the traceback, which
names the record."""
import weir


class Raises(weir.Transform):
    name, version, description = "python-raises", "0.2.0", "Raises"

    def transform(self, record):
        if record.index == 0:
            print("python-raises got a batch")
        1 / (len(record.value or b"") - 1)
        return record


Transformer = weir.transformer(Raises)
