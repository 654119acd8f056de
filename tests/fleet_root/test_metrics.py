"""fleet/metrics.py: the outcome labels (a fixed few), and the multiprocess directory that
``fleet serve`` empties before its workers start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet.metrics import (
    ENROLL_OUTCOMES,
    MULTIPROC_ENV,
    TOKEN_OUTCOMES,
    enroll_outcome,
    prepare_multiprocess_dir,
    token_outcome,
)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "granted"),
        (400, "bad_request"),
        (401, "bad_credentials"),
        (429, "throttled"),
        (500, "error"),
        (503, "error"),
        (404, "error"),
        (413, "error"),
    ],
)
def test_token_outcomes(status: int, outcome: str) -> None:
    assert token_outcome(status) == outcome
    assert outcome in TOKEN_OUTCOMES


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, "enrolled"),
        (400, "bad_request"),
        (401, "bad_secret"),
        (409, "conflict"),
        (429, "throttled"),
        (413, "bad_request"),
        (500, "error"),
    ],
)
def test_enroll_outcomes(status: int, outcome: str) -> None:
    assert enroll_outcome(status) == outcome
    assert outcome in ENROLL_OUTCOMES


def test_the_directory_is_emptied_and_named_for_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    old = tmp_path / "metrics"
    old.mkdir()
    (old / "counter_123.db").write_bytes(b"left by a server before")
    made = prepare_multiprocess_dir(tmp_path)
    assert made == old.resolve() and list(made.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(made)
    assert made.stat().st_mode & 0o777 == 0o700


def test_threads_making_the_metrics_at_once_lose_no_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a fresh gunicorn worker whose first requests arrive together: every thread gets
    the same counters, and the process's file holds every increment."""
    import threading

    from prometheus_client import CollectorRegistry, values
    from prometheus_client.multiprocess import MultiProcessCollector

    import fleet.metrics as module

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(module, "_made", None)
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # metrics() replaces it
    threads, each = 8, 50
    start = threading.Barrier(threads)
    seen: list[object] = []

    def count() -> None:
        start.wait()
        made = module.metrics()
        seen.append(made)
        for _ in range(each):
            made.token_requests.labels("granted").inc()

    workers = [threading.Thread(target=count) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len({id(made) for made in seen}) == 1
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    total = registry.get_sample_value("fleet_token_requests_total", {"outcome": "granted"})
    assert total == threads * each
