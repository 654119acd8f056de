"""How long a test waits: one setting scales every timeout, and waits are on conditions.

A test never sleeps for "long enough". It waits until what it expects is true, up to a deadline
that is generous on this machine and grows with ``FLEET_TEST_TIME_SCALE`` on a slower one (an
emulated arm64 root, a loaded CI box): ``FLEET_TEST_TIME_SCALE=3 scripts/test`` gives every
deadline three times as long. A deadline is a bound on a failure, never a pause on success, so a
larger scale costs nothing when the suite passes.

::

    wait_until(lambda: device.acknowledged, "the device acknowledged version 2")
    answer = wait_until(lambda: fetch() or None, "an answer", timeout=5)  # 5 s, scaled here
    process.wait(scaled(30))  # any other deadline: scaled where it is used

Durations that are part of what is tested (a password that expires in N seconds, a broker
that must refuse within N seconds) are scaled too, where the test's claim holds for any N.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "FLEET_TEST_TIME_SCALE"
MIN_SCALE = 1.0
MAX_SCALE = 20.0
DEFAULT_WAIT_S = 10.0
DEFAULT_POLL_S = 0.05


def _time_scale(environ: dict[str, str] | os._Environ[str] = os.environ) -> float:
    raw = environ.get(ENV_VAR, "").strip()
    if not raw:
        return MIN_SCALE
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a number, got {raw!r}") from None
    if not MIN_SCALE <= value <= MAX_SCALE:
        raise ValueError(f"{ENV_VAR} must be between {MIN_SCALE:g} and {MAX_SCALE:g}, got {raw}")
    return value


TIME_SCALE = _time_scale()


def scaled(seconds: float) -> float:
    """``seconds`` on this machine: multiplied by ``FLEET_TEST_TIME_SCALE`` (1 by default)."""
    return seconds * TIME_SCALE


def wait_until(
    predicate: Callable[[], T],
    what: str,
    timeout: float | None = None,
    poll: float = DEFAULT_POLL_S,
) -> T:
    """Call ``predicate`` until it returns something truthy and return that.

    ``timeout`` is in unscaled seconds (``DEFAULT_WAIT_S`` when omitted) and is scaled here.
    On timeout an ``AssertionError`` names ``what`` was awaited and the last value seen.
    """
    limit = scaled(DEFAULT_WAIT_S if timeout is None else timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {limit:g} s: {what} (last seen: {value!r})")
        time.sleep(poll)
