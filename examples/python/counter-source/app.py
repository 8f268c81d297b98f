"""counter-source: a source that emits the numbers [next, count) as JSON records.

Its one source partition is `counter`, and a record's source offset is its number in ASCII
decimal, so a restarted task resumes after the last committed number.
"""
import re

import weir
from componentize_py_types import Err
from wit_world.imports import state

PARTITION = b"counter"
BASE_TIMESTAMP = 1700000000000
# What Rust's `str::parse::<u64>` accepts (short of overflow): an optional `+`, then digits.
INTEGER = re.compile(r"\+?[0-9]+\Z")


class Counter(weir.Source):
    name, version, description = "counter-source", "0.2.0", "Counts, resuming where it was stored"
    config_keys = [weir.key("topic", "topic to write to", required=True),
                   weir.key("count", "how many records in all", type="int", default="10")]

    def open(self, config, committed):
        self.topic = config.require("topic")
        count = config.get("count", "10")
        if not INTEGER.match(count):
            raise weir.InvalidConfig("count", "not an integer")
        self.count, self.next = int(count), 0
        # Resume after the committed offset of `counter`; one that is not a number counts as none.
        for partition, offset in committed:
            if partition == PARTITION:
                text = offset.decode("utf-8", "replace")
                if INTEGER.match(text):
                    self.next = int(text) + 1
                break

    def poll(self, max_records):
        end = min(self.next + max_records, self.count)
        records = [weir.record(key=b"k%d" % i, value=b'{"n":%d}' % i, headers=[("source", PARTITION)],
                               timestamp=BASE_TIMESTAMP + i, topic=self.topic,
                               source_partition=PARTITION, source_offset=b"%d" % i)
                   for i in range(self.next, end)]
        self.next = max(self.next, end)
        return records

    def ack(self, stored):
        for partition, offset in stored:
            if partition == PARTITION:
                weir.log("acked " + offset.decode("utf-8", "replace"))
                try:
                    state.set("acked", offset)
                except Err as e:  # refused (over the state's bounds): says why
                    weir.log(str(e.value), "warn")

    def close(self):
        weir.log("closed")


Source = weir.source(Counter)
