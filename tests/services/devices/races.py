"""Run calls at the same moment: one thread each, released together by a barrier.

Each result is what the call returned or the exception it raised, in the order given, so a
test can say "exactly one won, the other got this clean error" without threads of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.support.timing import scaled

JOIN_S = 60.0


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Start every call at once (a ``threading.Barrier``); their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait(timeout=scaled(JOIN_S))
        try:
            results[i] = call()
        except BaseException as exc:  # handed to the test as its result
            results[i] = exc

    threads = [
        threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(scaled(JOIN_S))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise AssertionError(f"not finished within {scaled(JOIN_S):g} s: {stuck}")
    return results


def split(results: list[Any]) -> tuple[list[Any], list[BaseException]]:
    """(the results that were returned, the exceptions raised)."""
    errors = [r for r in results if isinstance(r, BaseException)]
    return [r for r in results if not isinstance(r, BaseException)], errors
