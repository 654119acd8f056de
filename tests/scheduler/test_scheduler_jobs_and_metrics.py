"""The scheduler's leader takes up the bulk jobs of a server that died (fleet/scheduler.py,
``BulkJobService.resume_abandoned``), a follower does not; and its passes are measured."""

from __future__ import annotations

import pytest
from sqlmodel import select

from fleet.db.devices import DISABLED, Device
from fleet.db.jobs import JOB_DONE, JOB_QUEUED
from fleet.metrics import metrics
from fleet.services import Services
from fleet.services.bulk_jobs import STALE_AFTER
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory
from tests.services.devices.conftest import new_device


class NeverLeads:
    def acquire(self) -> bool:
        return False

    def release(self) -> None:
        pass


class AlwaysLeads(NeverLeads):
    def acquire(self) -> bool:
        return True


def test_the_leader_resumes_an_abandoned_job_and_a_follower_does_not(
    fleet: Services, secret: str, clock: FakeClock, make_scheduler: SchedulerFactory
) -> None:
    for i in range(3):
        fleet.devices.enroll(f"rpi-{i}", secret, *new_device(f"rpi-{i}").keys)
    job = fleet.jobs.start("disable", "pilots", actor="t")  # its server died before running it
    clock.advance(seconds=STALE_AFTER.total_seconds() + 1)

    make_scheduler(fleet, NeverLeads())._safe_tick()
    fleet.jobs.wait_idle(30)
    assert fleet.jobs.show(job.id).state == JOB_QUEUED

    make_scheduler(fleet, AlwaysLeads())._safe_tick()
    fleet.jobs.wait_idle(30)
    assert fleet.jobs.show(job.id).state == JOB_DONE
    with fleet.ctx.db.session() as s:
        assert {d.status for d in s.exec(select(Device))} == {DISABLED}


def test_a_pass_is_timed_and_a_failed_one_counted(
    fleet: Services, make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = metrics()
    scheduler = make_scheduler(fleet, AlwaysLeads())
    passes = found.scheduler_pass_seconds.collect()[0]
    before = _sample(passes, "fleet_scheduler_pass_seconds_count")
    errors_before = found.scheduler_pass_errors._value.get()
    scheduler.tick()
    assert (
        _sample(found.scheduler_pass_seconds.collect()[0], "fleet_scheduler_pass_seconds_count")
        == before + 1
    )

    def broken() -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(scheduler.reconciler, "run_pass", broken)
    with pytest.raises(RuntimeError):
        scheduler.tick()
    assert found.scheduler_pass_errors._value.get() == errors_before + 1


def _sample(family, name: str) -> float:  # type: ignore[no-untyped-def]
    return next(s.value for s in family.samples if s.name == name)
