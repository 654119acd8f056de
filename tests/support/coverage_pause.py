"""Pause coverage measurement while a test forks children that are killed, never saved.

Under ``scripts/test`` coverage patches ``fork``: every forked child starts a new measurement
(about 0.1 s each here), which a test forking a thousand children that are all SIGKILLed pays
for nothing, since a killed child never writes its data. Inside :func:`coverage_paused` the
parent's measurement is stopped and the variables that make a child start its own are unset,
so a fork costs what it costs without coverage; both are put back on the way out. Outside a
coverage run it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

CHILD_START_VARIABLES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")


@contextlib.contextmanager
def coverage_paused() -> Iterator[None]:
    try:
        from coverage import Coverage
        from coverage.exceptions import CoverageWarning
    except ImportError:  # coverage is a development dependency; without it there is nothing
        yield
        return
    current = Coverage.current()
    saved = {name: os.environ.pop(name) for name in CHILD_START_VARIABLES if name in os.environ}
    if current is not None:
        current.stop()
    try:
        yield
    finally:
        if current is not None:
            with warnings.catch_warnings():  # restarting, it sees its own modules imported
                warnings.simplefilter("ignore", CoverageWarning)
                current.start()
        os.environ.update(saved)
