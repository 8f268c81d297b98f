"""file-sink: a sink that appends one line per record to a file under a granted directory.

`open` logs the positions it resumes after; `put` only buffers (a batch whole, or nothing of it
when a record is bad); `flush` appends the buffered lines, fsyncs the file, clears the buffer
and reports every position it was asked for as durable. A write that fails is reported as
retriable, and the buffer is kept for the retry.
"""
import os

import weir


def text(data):
    return "-" if data is None else data.decode("utf-8", "replace")


class FileSink(weir.Sink):
    name, version, description = "file-sink", "0.2.0", "Appends records to a file as lines"
    config_keys = [weir.key("path", "file to append to, under a granted directory", required=True)]

    def open(self, config, committed):
        for p in committed:
            weir.log(f"resuming after {p.topic}/{p.partition}/{p.offset}")
        self.path = config.require("path")
        self.lines = []

    def put(self, batch):
        lines = []
        for record in batch:
            if record.partition < 0 or record.offset < 0:
                raise weir.BadRecord(record.index, "record has no position")
            lines.append(f"{record.topic}/{record.partition}/{record.offset} "
                         f"{text(record.key)} {text(record.value)}\n")
        self.lines += lines

    def flush(self, up_to):
        try:
            with open(self.path, "ab") as f:
                f.write("".join(self.lines).encode())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise weir.Retriable(f"{self.path}: {e.strerror or e}")
        self.lines.clear()
        return up_to


Sink = weir.sink(FileSink)
