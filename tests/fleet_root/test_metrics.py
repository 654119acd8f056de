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
