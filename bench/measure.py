"""Alternating floor/endpoint runs against one server, and their medians.

The machine is shared: other programs take CPU in bursts of seconds. Short runs that alternate
(floor, endpoint, endpoint, floor, ...) see the same bursts, so the median of the per-pair
ratios is steadier than one long run of each. Each run also records the CPU the server's
process group spent per request, which other programs hardly move.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bench.load import LoadResult, process_group_cpu_s, run_wrk


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    headers: dict[str, str]


def measured(target: Target, *, seconds: float, connections: int, pgid: int) -> LoadResult:
    before = process_group_cpu_s(pgid)
    result = run_wrk(
        target.label, target.url, seconds=seconds, connections=connections, headers=target.headers
    )
    spent = process_group_cpu_s(pgid) - before
    cpu_us = spent / result.requests * 1e6 if result.requests else None
    return replace(result, server_cpu_us=None if cpu_us is None else round(cpu_us, 1))


def compare(
    floor: Target,
    endpoint: Target,
    *,
    pairs: int,
    seconds: float,
    connections: int,
    pgid: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``pairs`` alternating runs of each; medians, per-pair ratios and every run."""
    runs: list[tuple[LoadResult, LoadResult]] = []
    for index in range(pairs):
        order = (floor, endpoint) if index % 2 == 0 else (endpoint, floor)
        first, second = (
            measured(t, seconds=seconds, connections=connections, pgid=pgid) for t in order
        )
        f, e = (first, second) if index % 2 == 0 else (second, first)
        runs.append((f, e))
        progress(
            f"    pair {index + 1}/{pairs}: floor {f.rps:.0f} req/s, endpoint {e.rps:.0f} req/s"
        )
    floors = [f for f, _ in runs]
    endpoints = [e for _, e in runs]
    return {
        "floor": summary(floors),
        "endpoint": summary(endpoints),
        "ratio": round(statistics.median(e.rps / f.rps for f, e in runs), 3),
        "cpu_ratio": _cpu_ratio(floors, endpoints),
        "runs": [{"floor": f.to_json(), "endpoint": e.to_json()} for f, e in runs],
    }


def summary(runs: list[LoadResult]) -> dict[str, Any]:
    cpu = [r.server_cpu_us for r in runs if r.server_cpu_us is not None]
    return {
        "rps": round(statistics.median(r.rps for r in runs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
        "server_cpu_us": round(statistics.median(cpu), 1) if cpu else None,
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.errors for r in runs),
    }


def _cpu_ratio(floors: list[LoadResult], endpoints: list[LoadResult]) -> float | None:
    """Floor CPU per request / endpoint CPU per request: the throughput ratio on idle cores."""
    f = [r.server_cpu_us for r in floors if r.server_cpu_us]
    e = [r.server_cpu_us for r in endpoints if r.server_cpu_us]
    if not f or not e:
        return None
    return round(statistics.median(f) / statistics.median(e), 3)
