"""A pass that meets one bad row logs it, skips it and goes on with the rest (issue 12, defect 6).

The rows are made bad behind the service's back, as a database written before the API bounded
its numbers would hold them: one group's inactivity limit and another's password lifetime so
large that the date arithmetic overflows.
"""

from __future__ import annotations

import json
import logging

import pytest
from sqlmodel import select

from fleet.db.devices import DeviceGroup
from fleet.scheduler import recent_runs
from fleet.services import Services
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory, enroll_many
from tests.support.fake_broker import FakeBroker

# Fits a 32-bit integer column; too many days for a timedelta or a date.
HUGE_DAYS = 2_000_000_000


def _corrupt(fleet: Services, name: str, **values: int) -> None:
    with fleet.ctx.db.session() as s:
        group = s.exec(select(DeviceGroup).where(DeviceGroup.name == name)).one()
        for key, value in values.items():
            setattr(group, key, value)
        s.add(group)


def test_one_bad_group_or_device_does_not_stop_the_pass(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet.groups.update("pilots", inactivity_limit_days=10, actor="t")
    quiet, chatty = enroll_many(fleet, secret, 2)
    fleet.groups.create("broken", scope_map="devices-read", actor="t")
    broken_secret = fleet.groups.create_secret("broken", actor="t").value or ""
    fleet.devices.enroll("odd-0001", broken_secret, *quiet.fake.keys)
    fleet.devices.enroll("odd-0002", broken_secret, *quiet.fake.keys)
    for sim in (quiet, chatty):
        sim.sync(fleet, broker)
    # Bad rows: the group's inactivity limit overflows the cutoff; its lifetime overflows the
    # next rotation's expiry.
    _corrupt(fleet, "broken", inactivity_limit_days=HUGE_DAYS, password_lifetime_days=HUGE_DAYS)
    scheduler = make_scheduler(fleet)
    caplog.set_level(logging.WARNING)
    for _ in range(24):  # past the pilots' inactivity limit and their first rotation (day 23)
        chatty.connect(fleet)
        clock.advance(days=1)
        summary = scheduler.tick()
        assert summary is not None  # the pass ended; it did not raise
        chatty.sync(fleet, broker)
    assert fleet.devices.show(quiet.device_id).status == "disabled"
    assert fleet.devices.show(chatty.device_id).status == "active"
    assert len(chatty.accepted) == 2  # rotated on day 23 despite the broken group's devices
    assert chatty.can_pull(fleet)
    runs = recent_runs(fleet, limit=30)
    assert all(run.error is None and run.finished_at is not None for run in runs)
    summaries = [json.loads(run.summary) for run in runs]
    assert sum(s["devices_disabled_inactive"] for s in summaries) == 1
    assert summaries[0]["skipped"] >= 1
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "broken" in logged and "odd-0001" in logged and "skipped" in logged


def test_a_step_that_fails_whole_is_logged_and_the_later_steps_still_run(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    secret: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import timedelta

    fleet.tokens.create("ci-pusher", scope_map="_repositories_push", actor="t")
    fleet.tokens.update("ci-pusher", disable_at=clock() + timedelta(days=1), actor="t")
    scheduler = make_scheduler(fleet)

    def broken(*args: object) -> list[tuple[int, str]]:
        raise RuntimeError("the rotation query broke")

    monkeypatch.setattr(scheduler.reconciler, "_due_rotation", broken)
    clock.advance(days=2)
    caplog.set_level(logging.WARNING)
    summary = scheduler.tick()
    assert summary is not None and summary.failed_steps == 1
    assert summary.tokens_disabled == 1
    assert fleet.tokens.show("ci-pusher").status == "disabled"
    assert "rotation of device" in caplog.text and "the pass goes on" in caplog.text
