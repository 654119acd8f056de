"""Bulk jobs (fleet/services/bulk_jobs.py) on SQLite and PostgreSQL, with the fake broker:
a group rotated or disabled in batches, one job per group and kind, taken over after its
runner died without a device done twice, a device failing without stopping the job."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from sqlmodel import col, select

from fleet.db.devices import ACTIVE, DISABLED, Delivery, Device
from fleet.db.jobs import JOB_DONE, JOB_QUEUED, JOB_RUNNING, BulkJob
from fleet.db.models import AuditEvent
from fleet.domain.errors import ConflictError, NotFoundError, ValidationError
from fleet.services import Services
from fleet.services.bulk_jobs import MAX_ERRORS, STALE_AFTER, BulkJobService, LostClaim
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker

ME = "api-key:ops"
BATCH = 4


def enroll(fleet: Services, secret: str, count: int, prefix: str = "rpi") -> list[str]:
    ids = [f"{prefix}-{i:04d}" for i in range(count)]
    for device_id in ids:
        fleet.devices.enroll(device_id, secret, *new_device(device_id).keys)
    return ids


def jobs(fleet: Services, batch_size: int = BATCH) -> BulkJobService:
    return BulkJobService(fleet.ctx, fleet.devices, fleet.delivery, batch_size=batch_size)


def credentials_per_device(fleet: Services) -> Counter[str]:
    with fleet.ctx.db.session() as s:
        rows = s.exec(
            select(Device.device_id)
            .join(Delivery, col(Delivery.device_pk) == col(Device.id))
            .where(Delivery.kind == "credentials")
        ).all()
    return Counter(rows)


def audited(fleet: Services, action: str) -> list[tuple[str, dict[str, object]]]:
    with fleet.ctx.db.session() as s:
        rows = s.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))
        ).all()
    return [(r.target, json.loads(r.detail)) for r in rows]


def statuses(fleet: Services) -> dict[str, str]:
    with fleet.ctx.db.session() as s:
        return {d.device_id: d.status for d in s.exec(select(Device))}


def test_rotate_a_group_gives_each_active_device_one_new_password(
    fleet: Services, secret: str, broker: FakeBroker
) -> None:
    ids = enroll(fleet, secret, 10)
    fleet.devices.disable(ids[3], actor=ME)  # not active: not rotated, not counted
    before = credentials_per_device(fleet)
    published = len(broker.published)
    runner = jobs(fleet)

    queued = runner.start("rotate", "pilots", actor=ME)
    assert (queued.state, queued.total, queued.done) == (JOB_QUEUED, 9, 0)
    done = runner.run(queued.id)

    assert (done.state, done.total, done.done, done.failed, done.skipped) == (JOB_DONE, 9, 9, 0, 0)
    assert done.started_at is not None and done.finished_at is not None
    after = credentials_per_device(fleet)
    assert {d: after[d] - before[d] for d in ids} == {d: int(d != ids[3]) for d in ids}
    assert len(broker.published) - published == 9  # each published after its batch
    rotated = audited(fleet, "device.rotate")
    assert sorted(t for t, _ in rotated) == sorted(d for d in ids if d != ids[3])
    assert all(detail == {"job": done.id} for _, detail in rotated)
    assert audited(fleet, "group.rotate") == [("pilots", {"devices": 9, "job": done.id})]
    # Finished: another may start, and the finished one is not run again.
    assert runner.run(done.id) == runner.show(done.id)
    assert runner.start("rotate", "pilots", actor=ME).id != done.id


def test_disable_a_group_cuts_every_login_and_skips_the_ones_disabled_meanwhile(
    fleet: Services, secret: str, broker: FakeBroker
) -> None:
    ids = enroll(fleet, secret, 9)
    runner = jobs(fleet)
    job = runner.start("disable", "pilots", actor=ME, reason="stolen batch")
    fleet.devices.disable(ids[5], actor=ME)  # after the job counted it
    done = runner.run(job.id)

    assert (done.state, done.total, done.done, done.skipped, done.failed) == (JOB_DONE, 9, 8, 1, 0)
    assert set(statuses(fleet).values()) == {DISABLED}
    assert not any(login["enabled"] for login in broker.logins.values())
    disabled = audited(fleet, "device.disable")
    by_job = [t for t, d in disabled if d.get("job") == done.id]
    assert sorted(by_job) == sorted(d for d in ids if d != ids[5])
    assert all(d["reason"] == "stolen batch" for t, d in disabled if t in by_job)


def test_a_group_of_devices_enrolled_after_the_job_started_is_not_widened(
    fleet: Services, secret: str
) -> None:
    enroll(fleet, secret, 5)
    runner = jobs(fleet)
    job = runner.start("rotate", "pilots", actor=ME)
    late = enroll(fleet, secret, 2, prefix="late")
    before = credentials_per_device(fleet)
    done = runner.run(job.id)
    assert done.done == 5
    assert all(credentials_per_device(fleet)[d] == before[d] for d in late)


def test_an_empty_group_is_done_at_once(fleet: Services) -> None:
    job = jobs(fleet).start("disable", "pilots", actor=ME)
    assert (job.state, job.total) == (JOB_DONE, 0)
    assert jobs(fleet).start("disable", "pilots", actor=ME).state == JOB_DONE  # no 409


@pytest.mark.parametrize(
    ("kind", "group", "reason", "error"),
    [
        ("rotate", "nobody", "operator", NotFoundError),
        ("wipe", "pilots", "operator", ValidationError),
        ("disable", "pilots", "", ValidationError),
        ("disable", "pilots", "x" * 257, ValidationError),
    ],
)
def test_bad_requests_change_nothing(
    fleet: Services, kind: str, group: str, reason: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        jobs(fleet).start(kind, group, actor=ME, reason=reason)
    with fleet.ctx.db.session() as s:
        assert s.exec(select(BulkJob)).all() == []
    assert audited(fleet, f"group.{kind}") == []


def test_one_job_per_group_and_kind_the_second_is_told_which_runs(
    fleet: Services, secret: str
) -> None:
    enroll(fleet, secret, 3)
    runner = jobs(fleet)
    first = runner.start("rotate", "pilots", actor=ME)
    with pytest.raises(ConflictError) as info:
        runner.start("rotate", "pilots", actor=ME)
    assert info.value.code == "JobRunning"
    assert f"job {first.id}" in info.value.message
    other_kind = runner.start("disable", "pilots", actor=ME)  # another kind may run beside
    assert other_kind.state == JOB_QUEUED
    runner.run(first.id)
    assert runner.start("rotate", "pilots", actor=ME).state == JOB_QUEUED


def test_concurrent_starts_make_exactly_one_job(fleet: Services, secret: str) -> None:
    enroll(fleet, secret, 2)
    runner = jobs(fleet)
    barrier = threading.Barrier(6)
    made: list[int] = []
    refused: list[str] = []

    def ask() -> None:
        barrier.wait()
        try:
            made.append(runner.start("disable", "pilots", actor=ME).id)
        except ConflictError as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and refused == ["JobRunning"] * 5
    with fleet.ctx.db.session() as s:
        assert len(s.exec(select(BulkJob)).all()) == 1


def test_a_job_whose_runner_died_is_taken_over_and_no_device_is_rotated_twice(
    fleet: Services, secret: str, clock: FakeClock, broker: FakeBroker
) -> None:
    ids = enroll(fleet, secret, 10)
    before = credentials_per_device(fleet)
    dead = jobs(fleet)
    job = dead.start("rotate", "pilots", actor=ME)
    token = dead._claim(job.id)
    assert token is not None
    dead._next_batch(job.id, token)  # committed, then the server died before publishing
    published = len(broker.published)
    assert dead.show(job.id).done == BATCH

    heir = jobs(fleet)
    assert heir.resume_abandoned() == []  # its heartbeat is fresh: not abandoned yet
    assert heir.run(job.id).state == JOB_RUNNING  # nor may it be claimed
    clock.advance(seconds=STALE_AFTER.total_seconds() + 1)
    done = heir.run(job.id)

    assert (done.state, done.done, done.failed) == (JOB_DONE, 10, 0)
    after = credentials_per_device(fleet)
    assert {d: after[d] - before[d] for d in ids} == dict.fromkeys(ids, 1)
    assert len(broker.published) - published == 10  # the dead one's batch published too
    with pytest.raises(LostClaim):  # the first runner, should it wake up, stops
        dead._next_batch(job.id, token)


def test_resume_abandoned_runs_a_stale_job_in_the_background(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    enroll(fleet, secret, 3)
    runner = jobs(fleet)
    job = runner.start("disable", "pilots", actor=ME)  # queued, its thread never started
    clock.advance(seconds=STALE_AFTER.total_seconds() + 1)
    assert runner.resume_abandoned() == [job.id]
    runner.wait_idle(timeout_s=30)
    assert runner.show(job.id).state == JOB_DONE
    assert set(statuses(fleet).values()) == {DISABLED}


def test_a_stopping_server_hands_its_job_back(fleet: Services, secret: str) -> None:
    enroll(fleet, secret, 3)
    runner = jobs(fleet)
    job = runner.start("rotate", "pilots", actor=ME)
    runner.stop()
    assert runner.run(job.id).state == JOB_QUEUED  # released before any batch
    assert jobs(fleet).run(job.id).state == JOB_DONE  # the next one takes it up


def _break(fleet: Services, device_ids: list[str]) -> None:
    """A key the server cannot seal to: issuing a password to these devices raises."""
    with fleet.ctx.db.session() as s:
        for device in s.exec(select(Device).where(col(Device.device_id).in_(device_ids))):
            device.x25519_public = "not-a-key"
            s.add(device)


def test_a_device_failing_does_not_stop_the_job_and_the_list_is_bounded(
    fleet: Services, secret: str
) -> None:
    ids = enroll(fleet, secret, MAX_ERRORS + 6)
    broken = ids[1 : MAX_ERRORS + 3]  # more than are listed
    _break(fleet, broken)
    before = credentials_per_device(fleet)
    done = jobs(fleet).run(jobs(fleet).start("rotate", "pilots", actor=ME).id)

    assert (done.state, done.total, done.done, done.failed) == (
        JOB_DONE,
        len(ids),
        len(ids) - len(broken),
        len(broken),
    )
    assert len(done.errors) == MAX_ERRORS
    assert {e.device_id for e in done.errors} <= set(broken)
    after = credentials_per_device(fleet)
    assert [d for d in ids if after[d] > before[d]] == [d for d in ids if d not in broken]
    assert statuses(fleet) == dict.fromkeys(ids, ACTIVE)


def test_a_broker_refusing_logins_counts_those_devices_failed(
    fleet: Services, secret: str, broker: FakeBroker
) -> None:
    ids = enroll(fleet, secret, 5)
    broker.down = True
    runner = jobs(fleet)
    done = runner.run(runner.start("disable", "pilots", actor=ME).id)
    assert (done.state, done.done, done.failed) == (JOB_DONE, 0, 5)
    assert all("broker login is not" in e.message for e in done.errors)
    assert sorted(e.device_id for e in done.errors) == ids
    assert set(statuses(fleet).values()) == {DISABLED}  # the registry token is cut all the same


def test_the_list_pages_the_newest_first(fleet: Services) -> None:
    runner = jobs(fleet)
    made = [runner.start(kind, "pilots", actor=ME).id for kind in ("rotate", "disable")]
    made += [runner.start("rotate", "pilots", actor=ME).id]  # empty group: each done at once
    first = runner.list(limit=2)
    assert [j.id for j in first.items] == made[::-1][:2] and first.next_cursor
    rest = runner.list(limit=2, cursor=first.next_cursor)
    assert [j.id for j in rest.items] == [made[0]] and rest.next_cursor is None


def test_a_running_job_beats_while_a_batch_is_slow_to_settle(
    fleet: Services, secret: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fleet.services.bulk_jobs as module

    enroll(fleet, secret, 2)
    monkeypatch.setattr(module, "HEARTBEAT_S", 0.05)
    runner = jobs(fleet)
    job = runner.start("rotate", "pilots", actor=ME)
    seen: list[tuple[object, object]] = []
    settle = runner._settle

    def slow_settle(job_id: int, token: str, batch: object) -> None:
        clock.advance(minutes=1)  # a broker taking its time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with fleet.ctx.db.session() as s:
                beat = s.get(BulkJob, job_id).heartbeat_at  # type: ignore[union-attr]
            if beat == clock():
                break
            time.sleep(0.02)
        seen.append((beat, clock()))
        settle(job_id, token, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_settle", slow_settle)
    assert runner.run(job.id).state == JOB_DONE
    assert seen and all(beat == now for beat, now in seen)  # moved while it settled
