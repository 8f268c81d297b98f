"""A Python transform that prints, then raises on a record whose value is one byte long:
the host must fail only this task, log the print, and end the error with the traceback."""
from typing import List, Tuple

from wit_world import exports
from wit_world.imports.types import Descriptor, PluginKind, Record


class Transformer(exports.Transformer):
    def describe(self) -> Descriptor:
        return Descriptor(name="python-raises", version="0.1.0", kind=PluginKind.TRANSFORM, description="Raises", config=[])

    def open(self, config: List[Tuple[str, str]]) -> None:
        pass

    def apply(self, batch: List[Record]) -> List[Record]:
        print(f"python-raises got {len(batch)} records")
        return [r for r in batch if 1 / (len(r.value or b"") - 1)]
