"""Backoff with full jitter, and the pull schedule built on it: failed pulls (a refused login
above all) wait longer and longer up to a cap, never in a hot loop; new credentials, a ``pull``
command and success reset what they should."""

from __future__ import annotations

import random

import pytest

from device_agent.runtime.backoff import Backoff
from device_agent.runtime.schedule import JITTER_FRACTION, PullSchedule

IMAGE = "samples/app:1.0"


def test_full_jitter_stays_under_a_doubling_capped_ceiling() -> None:
    backoff = Backoff(base_s=1, cap_s=60, rng=random.Random(7))
    ceilings = []
    for _ in range(12):
        ceiling = backoff.ceiling()
        assert 0 <= backoff.next_delay() <= ceiling
        ceilings.append(ceiling)
    assert ceilings[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert set(ceilings[6:]) == {60}
    backoff.reset()
    assert backoff.ceiling() == 1


def test_jitter_spreads_a_fleet() -> None:
    rng = random.Random(1)
    delays = []
    for _ in range(200):
        backoff = Backoff(base_s=1, cap_s=300, rng=rng)
        for _ in range(5):
            delay = backoff.next_delay()
        delays.append(delay)
    assert max(delays) - min(delays) > 10  # not in lock-step
    assert all(0 <= d <= 16 for d in delays)


def test_a_floor_is_respected_and_huge_failure_counts_are_fine() -> None:
    backoff = Backoff(base_s=2, cap_s=10, floor_s=2, failures=10_000)
    assert all(2 <= backoff.next_delay() <= 10 for _ in range(50))


@pytest.mark.parametrize(("base", "cap", "floor"), [(0, 1, 0), (2, 1, 0), (1, 2, 3), (1, 2, -1)])
def test_bad_backoff_settings(base: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base_s=base, cap_s=cap, floor_s=floor)


def schedule(**changes: object) -> PullSchedule:
    options: dict = {
        "images": (IMAGE,),
        "interval_s": 3600.0,
        "backoff_base_s": 30.0,
        "backoff_cap_s": 600.0,
        "now": 0.0,
        "rng": random.Random(3),
    }
    options.update(changes)
    return PullSchedule(**options)


def test_configured_images_are_due_at_start_then_every_interval() -> None:
    plan = schedule()
    assert plan.take_due(0.0) == [IMAGE]
    assert plan.take_due(0.0) == []  # running
    assert plan.next_deadline() is None
    due = plan.finished(IMAGE, ok=True, now=10.0)
    assert due is not None
    assert 10 + 3600 * (1 - JITTER_FRACTION) <= due <= 10 + 3600 * (1 + JITTER_FRACTION)
    assert plan.take_due(due - 1) == [] and plan.take_due(due) == [IMAGE]


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    plan = schedule()
    now, waits = 0.0, []
    for _ in range(10):
        assert plan.take_due(now) == [IMAGE]
        due = plan.finished(IMAGE, ok=False, now=now)
        assert due is not None
        waits.append(due - now)
        now = due
    assert all(30 <= w <= 600 for w in waits)  # never below the base: no hot loop
    assert max(waits[5:]) > 120  # grows
    plan.take_due(now)
    after_success = plan.finished(IMAGE, ok=True, now=now)
    assert after_success is not None and after_success - now > 3000


def test_new_credentials_end_the_wait_of_failing_images_only() -> None:
    plan = schedule(images=(IMAGE, "samples/ok:1"))
    plan.take_due(0.0)
    plan.finished(IMAGE, ok=False, now=0.0)
    plan.finished("samples/ok:1", ok=True, now=0.0)
    plan.credentials_changed(5.0)
    assert plan.take_due(5.0) == [IMAGE]


def test_a_pull_command_runs_now_and_once_for_unconfigured_images() -> None:
    plan = schedule()
    plan.take_due(0.0)
    plan.finished(IMAGE, ok=True, now=0.0)
    plan.request(("samples/extra:2",), 1.0)
    assert plan.take_due(1.0) == ["samples/extra:2"]
    assert plan.finished("samples/extra:2", ok=False, now=2.0) is None  # not retried
    assert plan.take_due(1e9) == [IMAGE]


def test_a_pull_command_during_a_pull_runs_it_again_after() -> None:
    plan = schedule()
    plan.take_due(0.0)
    plan.request((), 1.0)  # () = the configured images
    assert plan.finished(IMAGE, ok=True, now=2.0) == 2.0
    assert plan.take_due(2.0) == [IMAGE]


def test_released_images_stay_due() -> None:
    plan = schedule()
    plan.release(plan.take_due(0.0))
    assert plan.next_deadline() == 0.0
