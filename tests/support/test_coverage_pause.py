"""coverage_paused stops the measurement and hides the child start-up variables, then restores
both, under a coverage run or not."""

from __future__ import annotations

import os

import pytest
from coverage import Coverage

from tests.support.coverage_pause import CHILD_START_VARIABLES, coverage_paused


def test_inside_nothing_measures_and_no_child_would_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", ":data:{}")
    before = Coverage.current()
    with coverage_paused():
        assert Coverage.current() is None
        assert not any(name in os.environ for name in CHILD_START_VARIABLES)
    assert Coverage.current() is before
    assert os.environ["COVERAGE_PROCESS_CONFIG"] == ":data:{}"


def test_an_error_inside_still_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_PROCESS_START", "pyproject.toml")
    before = Coverage.current()
    with pytest.raises(RuntimeError), coverage_paused():
        raise RuntimeError("inside")
    assert Coverage.current() is before
    assert os.environ["COVERAGE_PROCESS_START"] == "pyproject.toml"
