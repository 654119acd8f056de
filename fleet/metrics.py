"""The server's Prometheus metrics, correct across gunicorn's worker processes.

``fleet serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at ``<data dir>/metrics`` (emptied at
start; a dead worker's live gauges are removed in gunicorn's ``child_exit``), so each worker
writes its counters to files there and a scrape answered by any worker adds them all up.
Without that variable (tests, ``flask run``) the counters are this process's own.

The metrics are made on first use, not at import: prometheus_client picks its value class
(in memory or in files) from the environment when a metric is made, and ``fleet serve`` sets
the variable only after the CLI has imported everything. Labels take a few fixed values only:
never a device, a token or an address (cardinality).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_NAME = "metrics"

TOKEN_OUTCOMES = ("granted", "bad_request", "bad_credentials", "throttled", "error")
ENROLL_OUTCOMES = ("enrolled", "bad_request", "bad_secret", "conflict", "throttled", "error")
# Token requests take milliseconds; a slow database or a cold cache shows in the upper ones.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Metrics:
    registry: Any  # this process's CollectorRegistry (single-process mode)
    token_requests: Any
    token_seconds: Any
    enrollments: Any
    deliveries_acknowledged: Any
    passwords_issued: Any
    scheduler_pass_seconds: Any
    scheduler_pass_errors: Any


_made: Metrics | None = None
_making = threading.Lock()


def metrics() -> Metrics:
    """This process's metrics, made once (see the module's docstring for why not at import).

    Under a lock: two request threads making them at once would each hold counters of their
    own over the same entries of the process's file, and each write its own total there, so
    one's counts would overwrite the other's (``functools.cache`` does not lock; a test run
    lost 2 of 60 token requests that way)."""
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _make_metrics()
    return _made


def _make_metrics() -> Metrics:
    from prometheus_client import CollectorRegistry, Counter, Histogram, values

    values.ValueClass = values.get_value_class()  # files if the variable is set by now
    registry = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=registry,
        token_requests=Counter(
            "fleet_token_requests",
            "Requests to /oauth2/token by outcome",
            ["outcome"],
            registry=registry,
        ),
        token_seconds=Histogram(
            "fleet_token_request_seconds",
            "Time to answer /oauth2/token",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        enrollments=Counter(
            "fleet_enrollments", "Enrollment requests by outcome", ["outcome"], registry=registry
        ),
        deliveries_acknowledged=Counter(
            "fleet_deliveries_acknowledged",
            "Deliveries (credentials, commands) acknowledged by their device",
            registry=registry,
        ),
        passwords_issued=Counter(
            "fleet_device_passwords_issued",
            "Device passwords issued: rotations (operator, bulk job, scheduler), first "
            "passwords and reissues; counted when written, before the commit",
            registry=registry,
        ),
        scheduler_pass_seconds=Histogram(
            "fleet_scheduler_pass_seconds",
            "Duration of the reconciler's passes (on the leader)",
            buckets=PASS_BUCKETS,
            registry=registry,
        ),
        scheduler_pass_errors=Counter(
            "fleet_scheduler_pass_errors", "Reconciler passes that failed", registry=registry
        ),
    )


def token_outcome(status: int) -> str:
    """The token endpoint's answer, as a label."""
    if status == 200:
        return "granted"
    return {400: "bad_request", 401: "bad_credentials", 429: "throttled"}.get(status, "error")


def enroll_outcome(status: int) -> str:
    if status == 201:
        return "enrolled"
    named = {400: "bad_request", 401: "bad_secret", 409: "conflict", 429: "throttled"}
    return named.get(status, "bad_request" if 400 <= status < 500 else "error")


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """``fleet serve``, before its workers start: an empty metrics directory in the data
    directory, named by ``PROMETHEUS_MULTIPROC_DIR`` for the workers it forks."""
    path = data_dir.resolve() / METRICS_DIR_NAME
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: the dead worker's live gauges go (its counters stay)."""
    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
