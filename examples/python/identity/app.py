"""identity: a transform that returns every batch unchanged."""
from typing import List, Tuple

from wit_world import exports
from wit_world.imports.types import Descriptor, PluginKind, Record


class Transformer(exports.Transformer):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="identity",
            version="0.1.0",
            kind=PluginKind.TRANSFORM,
            description="Returns records unchanged",
            config=[],
        )

    def open(self, config: List[Tuple[str, str]]) -> None:
        pass

    def apply(self, batch: List[Record]) -> List[Record]:
        return batch
