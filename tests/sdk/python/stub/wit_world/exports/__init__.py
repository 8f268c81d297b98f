"""The three exported interfaces (componentize-py generates the one of the world it builds)."""
from abc import abstractmethod
from typing import List, Protocol, Tuple

from ..imports import types


class Transformer(Protocol):
    @abstractmethod
    def describe(self) -> types.Descriptor: ...

    @abstractmethod
    def validate(self, config: List[Tuple[str, str]]) -> List[types.ConfigError]: ...

    @abstractmethod
    def open(self, config: List[Tuple[str, str]]) -> None: ...

    @abstractmethod
    def apply(self, input: bytes) -> types.Output: ...


class Source(Protocol):
    @abstractmethod
    def describe(self) -> types.Descriptor: ...

    @abstractmethod
    def validate(self, config: List[Tuple[str, str]]) -> List[types.ConfigError]: ...

    @abstractmethod
    def task_configs(self, config: List[Tuple[str, str]], max_tasks: int) -> List[List[Tuple[str, str]]]: ...

    @abstractmethod
    def open(self, config: List[Tuple[str, str]], committed: List[Tuple[bytes, bytes]]) -> None: ...

    @abstractmethod
    def poll(self, max_records: int) -> bytes: ...

    @abstractmethod
    def ack(self, stored: List[Tuple[bytes, bytes]]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class Sink(Protocol):
    @abstractmethod
    def describe(self) -> types.Descriptor: ...

    @abstractmethod
    def validate(self, config: List[Tuple[str, str]]) -> List[types.ConfigError]: ...

    @abstractmethod
    def task_configs(self, config: List[Tuple[str, str]], max_tasks: int) -> List[List[Tuple[str, str]]]: ...

    @abstractmethod
    def open(self, config: List[Tuple[str, str]], committed: List[types.LogPosition]) -> None: ...

    @abstractmethod
    def put(self, input: bytes) -> None: ...

    @abstractmethod
    def flush(self, up_to: List[types.LogPosition]) -> List[types.LogPosition]: ...

    @abstractmethod
    def close(self) -> None: ...
