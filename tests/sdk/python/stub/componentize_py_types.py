"""Stand-in for componentize-py's `componentize_py_types` (what its bindings generate), so that
weir.py's glue runs under plain CPython. test_stub_matches_generated_bindings checks it."""
from dataclasses import dataclass
from typing import Generic, TypeVar, Union

T = TypeVar("T")
E = TypeVar("E")


@dataclass
class Some(Generic[T]):
    value: T


@dataclass
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True)
class Err(Generic[E], Exception):
    value: E


Result = Union[Ok[T], Err[E]]
