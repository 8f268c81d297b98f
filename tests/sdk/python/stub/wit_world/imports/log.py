"""weir:connector/log; the messages logged are kept in `LOGGED` for the tests."""
from enum import Enum


class Level(Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


LOGGED = []


def log(level: Level, message: str) -> None:
    LOGGED.append((level, message))
