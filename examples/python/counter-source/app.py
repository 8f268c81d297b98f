"""counter-source: a source that emits the numbers [next, count) as JSON records.

Its one source partition is `counter`, and a record's source offset is its number in ASCII
decimal, so a restarted task resumes after the last committed number.
"""
import re
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state
from wit_world.imports.types import (
    ConfigError,
    ConfigKey,
    ConfigType,
    Descriptor,
    Error_InvalidConfig,
    Header,
    PluginKind,
    Record,
)

PARTITION = b"counter"
BASE_TIMESTAMP = 1700000000000
# What Rust's `str::parse::<u64>` accepts (short of overflow): an optional `+`, then ASCII
# digits.
_INTEGER = re.compile(r"\+?[0-9]+\Z")

# Module state: componentize-py may create a new Source object per call.
_topic = ""
_count = 10
_next = 0


def _get(config: List[Tuple[str, str]], key: str) -> Optional[str]:
    for name, value in config:
        if name == key:
            return value
    return None


def _record(i: int) -> Record:
    return Record(
        key=b"k%d" % i,
        value=b'{"n":%d}' % i,
        headers=[Header(name="source", value=PARTITION)],
        timestamp=BASE_TIMESTAMP + i,
        topic=_topic,
        partition=None,
        position=None,
        source_partition=PARTITION,
        source_offset=b"%d" % i,
    )


class Source(exports.Source):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="counter-source",
            version="0.1.0",
            kind=PluginKind.SOURCE,
            description="Counts, resuming where it was stored",
            config=[
                ConfigKey(
                    name="topic",
                    type=ConfigType.STRING,
                    default_value=None,
                    documentation="topic to write to",
                    required=True,
                    secret=False,
                ),
                ConfigKey(
                    name="count",
                    type=ConfigType.INT,
                    default_value="10",
                    documentation="how many records in all",
                    required=False,
                    secret=False,
                ),
            ],
        )

    def open(self, config: List[Tuple[str, str]], committed: List[Tuple[bytes, bytes]]) -> None:
        global _topic, _count, _next
        topic = _get(config, "topic")
        if topic is None:
            raise Err(Error_InvalidConfig(ConfigError(key="topic", message="required")))
        count = _get(config, "count")
        if count is None:
            count = "10"
        if not _INTEGER.match(count):
            raise Err(Error_InvalidConfig(ConfigError(key="count", message="not an integer")))
        # Resume after the first committed offset of `counter`; one that is not a number
        # counts as none.
        next_number = 0
        for partition, offset in committed:
            if partition == PARTITION:
                text = offset.decode("utf-8", "replace")
                if _INTEGER.match(text):
                    next_number = int(text) + 1
                break
        _topic, _count, _next = topic, int(count), next_number

    def poll(self, max_records: int) -> List[Record]:
        global _next
        end = min(_next + max_records, _count)
        batch = [_record(i) for i in range(_next, end)]
        _next = max(_next, end)
        return batch

    def ack(self, stored: List[Tuple[bytes, bytes]]) -> None:
        for partition, offset in stored:
            if partition == PARTITION:
                log.log(log.Level.INFO, "acked " + offset.decode("utf-8", "replace"))
                state.set("acked", offset)

    def close(self) -> None:
        log.log(log.Level.INFO, "closed")
