"""file-sink: a sink that appends one line per record to a file under a granted directory.

`put` only buffers; `flush` appends the buffered lines, fsyncs the file and clears the
buffer. A write that fails is reported as retriable and the buffer is kept for the retry.
"""
import os
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import (
    BadRecord,
    ConfigError,
    ConfigKey,
    ConfigType,
    Descriptor,
    Error_BadRecord,
    Error_InvalidConfig,
    Error_Retriable,
    LogPosition,
    PluginKind,
    Record,
)

# Module state: componentize-py may create a new Sink object per call.
_path = ""
_lines: List[bytes] = []


def _get(config: List[Tuple[str, str]], key: str) -> Optional[str]:
    for name, value in config:
        if name == key:
            return value
    return None


def _text(data: Optional[bytes]) -> str:
    return "-" if data is None else data.decode("utf-8", "replace")


class Sink(exports.Sink):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="file-sink",
            version="0.1.0",
            kind=PluginKind.SINK,
            description="Appends records to a file as lines",
            config=[
                ConfigKey(
                    name="path",
                    type=ConfigType.STRING,
                    default_value=None,
                    documentation="file to append to, under a granted directory",
                    required=True,
                    secret=False,
                )
            ],
        )

    def open(self, config: List[Tuple[str, str]]) -> None:
        global _path, _lines
        path = _get(config, "path")
        if path is None:
            raise Err(Error_InvalidConfig(ConfigError(key="path", message="required")))
        _path = path
        _lines = []

    def put(self, batch: List[Record]) -> None:
        # Records before a bad one stay buffered (as in the Rust guest).
        for i, record in enumerate(batch):
            p = record.position
            if p is None:
                raise Err(Error_BadRecord(BadRecord(index=i, message="record has no position")))
            line = f"{p.topic}/{p.partition}/{p.offset} {_text(record.key)} {_text(record.value)}\n"
            _lines.append(line.encode("utf-8"))

    def flush(self, up_to: List[LogPosition]) -> None:
        try:
            with open(_path, "ab") as f:
                f.write(b"".join(_lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise Err(Error_Retriable(f"{_path}: {e.strerror or e}"))
        _lines.clear()

    def close(self) -> None:
        pass
