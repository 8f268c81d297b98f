"""json-rewrite: renames one top-level JSON field (`from` -> `to`) with a byte-level rewrite.

A record whose value is not a JSON object (its first byte is not `{`) is reported as a bad
record by its index; a record without a value is left alone. No JSON parsing: only the first
occurrence of `"<from>":` is replaced by `"<to>":`.
"""
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
    PluginKind,
    Record,
)

# Module state: componentize-py may create a new Transformer object per call, so the
# configuration lives here, not on `self`.
_from: bytes = b""
_to: bytes = b""


def _key(name: str, doc: str) -> ConfigKey:
    return ConfigKey(
        name=name, type=ConfigType.STRING, default_value=None, documentation=doc, required=True, secret=False
    )


def _get(config: List[Tuple[str, str]], key: str) -> Optional[str]:
    for name, value in config:
        if name == key:
            return value
    return None


class Transformer(exports.Transformer):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="json-rewrite",
            version="0.1.0",
            kind=PluginKind.TRANSFORM,
            description="Renames a top-level JSON field",
            config=[_key("from", "field to rename"), _key("to", "its new name")],
        )

    def open(self, config: List[Tuple[str, str]]) -> None:
        global _from, _to
        source = _get(config, "from")
        if source is None:
            raise Err(Error_InvalidConfig(ConfigError(key="from", message="required")))
        target = _get(config, "to")
        if target is None:
            raise Err(Error_InvalidConfig(ConfigError(key="to", message="required")))
        _from = b'"' + source.encode() + b'":'
        _to = b'"' + target.encode() + b'":'

    def apply(self, batch: List[Record]) -> List[Record]:
        for i, record in enumerate(batch):
            value = record.value
            if value is None:
                continue
            if value[:1] != b"{":
                raise Err(Error_BadRecord(BadRecord(index=i, message="value is not a JSON object")))
            record.value = value.replace(_from, _to, 1)
        return batch
