"""Puts sdk/python (weir.py) and the stand-in for componentize-py's bindings (stub/) on the path."""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
for path in (ROOT / "sdk" / "python", HERE / "stub"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True)
def host():
    """The stub host's log and state, emptied around each test."""
    from wit_world.imports import log, state

    log.LOGGED.clear()
    state.STATE.clear()
    yield log.LOGGED, state.STATE
