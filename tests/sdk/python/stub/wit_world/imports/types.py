"""weir:connector/types, as componentize-py 0.25 generates it."""
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Union


@dataclass
class LogPosition:
    topic: str
    partition: int
    offset: int


@dataclass
class Output_Passthrough:
    pass


@dataclass
class Output_Select:
    value: List[int]


@dataclass
class Output_Replace:
    value: bytes


Output = Union[Output_Passthrough, Output_Select, Output_Replace]


class ConfigType(Enum):
    STRING = 0
    INT = 1
    LONG = 2
    DOUBLE = 3
    BOOLEAN = 4
    LIST = 5
    PASSWORD = 6


@dataclass
class ConfigKey:
    name: str
    type: ConfigType
    default_value: Optional[str]
    documentation: str
    required: bool
    secret: bool


class PluginKind(Enum):
    SOURCE = 0
    SINK = 1
    TRANSFORM = 2


@dataclass
class Descriptor:
    name: str
    version: str
    kind: PluginKind
    description: str
    config: List[ConfigKey]


@dataclass
class ConfigError:
    key: str
    message: str


@dataclass
class BadRecord:
    index: int
    message: str


@dataclass
class Error_Retriable:
    value: str


@dataclass
class Error_Fatal:
    value: str


@dataclass
class Error_InvalidConfig:
    value: ConfigError


@dataclass
class Error_BadRecord:
    value: BadRecord


Error = Union[Error_Retriable, Error_Fatal, Error_InvalidConfig, Error_BadRecord]
