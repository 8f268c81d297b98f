"""weir:connector/state, as a dict (`STATE`)."""
from typing import Optional

STATE = {}


def get(key: str) -> Optional[bytes]:
    return STATE.get(key)


def set(key: str, value: bytes) -> None:
    STATE[key] = value


def delete(key: str) -> None:
    STATE.pop(key, None)
