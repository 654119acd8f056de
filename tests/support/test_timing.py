"""The tests' own clock: the time scale is read and bounded, and waits are on conditions."""

from __future__ import annotations

import itertools

import pytest

from tests.support import timing


@pytest.mark.parametrize(
    ("raw", "scale"), [("", 1.0), ("1", 1.0), ("3", 3.0), (" 2.5 ", 2.5), ("20", 20.0)]
)
def test_the_time_scale_is_read_from_the_environment(raw: str, scale: float) -> None:
    assert timing._time_scale({timing.ENV_VAR: raw}) == scale


def test_no_setting_means_a_scale_of_one() -> None:
    assert timing._time_scale({}) == 1.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [("fast", "must be a number"), ("0.5", "between 1 and 20"), ("21", "between 1 and 20")],
)
def test_a_bad_time_scale_is_refused_with_its_value(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        timing._time_scale({timing.ENV_VAR: raw})


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert timing.wait_until(lambda: next(calls) >= 3 and "done", "three calls", poll=0) == "done"


def test_wait_until_names_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the answer \(last seen: 0\)"):
        timing.wait_until(lambda: 0, "the answer", timeout=0.05, poll=0.01)
