from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlmodel import select

from fleet.db.devices import Delivery
from fleet.db.models import AuditEvent
from fleet.scheduler import recent_runs
from fleet.services import Services
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory, enroll_many
from tests.support.fake_broker import FakeBroker

STEP_HOURS = 12
DAYS = 90


def credential_versions(services: Services) -> Counter[str]:
    with services.ctx.db.session() as s:
        rows = s.exec(select(Delivery.device_pk, Delivery.kind)).all()
    return Counter(str(pk) for pk, kind in rows if kind == "credentials")


def test_100_devices_live_90_days_with_no_gap_and_no_double_rotation(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
) -> None:
    sims = enroll_many(fleet, secret, 100)
    roamer = sims[7]  # offline from day 20 to day 26, across its first rotation (day 23)
    scheduler = make_scheduler(fleet)
    for step in range(DAYS * 24 // STEP_HOURS + 1):
        day = step * STEP_HOURS / 24
        if day == 20:
            roamer.online = False
        if day == 26:
            roamer.connect(fleet)
        scheduler.tick()
        for sim in sims:
            sim.sync(fleet, broker)
            assert sim.can_pull(fleet), f"{sim.device_id} has no valid password on day {day}"
        clock.advance(hours=STEP_HOURS)
    # 30-day passwords, rotated 7 days before expiry: days 0, 23, 46, 69 -> 4 credentials each
    assert {len(sim.accepted) for sim in sims} == {4}
    assert set(credential_versions(fleet).values()) == {4}
    with fleet.ctx.db.session() as s:
        expiring = s.exec(
            select(AuditEvent).where(AuditEvent.action == "device.credentials.expiring")
        ).all()
    assert expiring == []  # everyone acknowledged in time
    # the old slot was retired after each acknowledgement: on day 90, 21 days after the last
    # rotation, each device's token holds the one password it acknowledged last
    for sim in sims:
        token = fleet.tokens.show(f"dev-{sim.device_id}")
        assert sim.current is not None
        assert [p.name for p in token.passwords] == [sim.current["slot"]]


def test_a_device_that_never_acknowledges_warns_and_keeps_its_old_password(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
) -> None:
    (sim,) = enroll_many(fleet, secret, 1)
    scheduler = make_scheduler(fleet)
    sim.sync(fleet, broker)
    first = sim.current
    sim.online = False
    clock.advance(days=23)
    scheduler.tick()  # rotation: password2 sent, not acknowledged
    assert sim.can_pull(fleet)  # password1 still works
    clock.advance(days=4)
    scheduler.tick()  # 3 days before expiry, no acknowledged replacement: a warning
    with fleet.ctx.db.session() as s:
        events = s.exec(
            select(AuditEvent).where(AuditEvent.action == "device.credentials.expiring")
        ).all()
    assert [e.target for e in events] == ["sim-0000"]
    scheduler.tick()
    with fleet.ctx.db.session() as s:  # once, not on every pass
        assert (
            len(
                s.exec(
                    select(AuditEvent).where(AuditEvent.action == "device.credentials.expiring")
                ).all()
            )
            == 1
        )
    sim.connect(fleet)
    sim.sync(fleet, broker)
    assert sim.current != first and sim.can_pull(fleet)


def test_killed_mid_pass_rotates_nobody_twice(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sims = enroll_many(fleet, secret, 20)
    for sim in sims:
        sim.sync(fleet, broker)
    scheduler = make_scheduler(fleet)
    clock.advance(days=23)
    real = fleet.envelopes.queue_credentials
    calls = {"n": 0}

    def dies_on_the_tenth(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 10:
            raise SystemExit("killed")  # the process dies in the middle of the batch
        return real(*args, **kwargs)

    monkeypatch.setattr(fleet.envelopes, "queue_credentials", dies_on_the_tenth)
    with pytest.raises(SystemExit):
        scheduler.tick()
    assert set(credential_versions(fleet).values()) == {1}  # the batch rolled back whole
    monkeypatch.setattr(fleet.envelopes, "queue_credentials", real)
    # killed after committing, before publishing: the next pass publishes, rotates nothing
    real_publish = fleet.delivery.publish_pending
    monkeypatch.setattr(
        fleet.delivery,
        "publish_pending",
        lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")),
    )
    with pytest.raises(SystemExit):
        scheduler.tick()
    monkeypatch.setattr(fleet.delivery, "publish_pending", real_publish)
    assert set(credential_versions(fleet).values()) == {2}
    published_before = len(broker.published)
    scheduler.tick()
    assert set(credential_versions(fleet).values()) == {2}
    # the 20 committed, never published rotations, and nothing else
    assert len(broker.published) - published_before == len(sims)
    for sim in sims:
        sim.sync(fleet, broker)
        assert sim.accepted == [1, 2]


def test_planned_disable_and_inactivity(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
) -> None:
    from datetime import timedelta

    fleet.groups.update("pilots", inactivity_limit_days=10, actor="t")
    quiet, chatty = enroll_many(fleet, secret, 2)
    fleet.tokens.create("ci-pusher", scope_map="_repositories_push", actor="t")
    fleet.tokens.update("ci-pusher", disable_at=clock() + timedelta(days=5), actor="t")
    scheduler = make_scheduler(fleet)
    for _ in range(12):
        chatty.connect(fleet)
        clock.advance(days=1)
        scheduler.tick()
    assert fleet.tokens.show("ci-pusher").status == "disabled"
    assert fleet.devices.show(quiet.device_id).status == "disabled"
    assert fleet.devices.show(chatty.device_id).status == "active"
    assert fleet.tokens.show("dev-sim-0000").status == "disabled"
    summaries = [json.loads(run.summary) for run in recent_runs(fleet, limit=20)]
    assert sum(s["tokens_disabled"] for s in summaries) == 1
    assert sum(s["devices_disabled_inactive"] for s in summaries) == 1


def test_two_schedulers_on_postgresql_only_one_acts(postgres_schema_url: str) -> None:
    from sqlalchemy import create_engine

    from fleet.services.leadership import PostgresLeadership

    first = PostgresLeadership(create_engine(postgres_schema_url))
    second = PostgresLeadership(create_engine(postgres_schema_url))
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.acquire() is True  # still ours, checked on its own connection
        first.release()
        assert second.acquire() is True
        assert first.acquire() is False
    finally:
        first.release()
        second.release()


def test_two_schedulers_on_sqlite_only_one_acts(
    make_scheduler: SchedulerFactory, fleet: Services, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from fleet.services.leadership import FileLeadership

    lock = tmp_path / "scheduler.lock"
    one, two = (
        make_scheduler(fleet, FileLeadership(lock)),
        make_scheduler(fleet, FileLeadership(lock)),
    )
    assert one.tick() is not None
    assert two.tick() is None
    one.stop()
    assert two.tick() is not None
    two.stop()


def test_each_rotated_batch_is_published_as_it_commits_and_only_once(
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Devices get their new password while the pass goes on: every rotation is on the broker
    before the publishing step starts, which then has nothing left to send."""
    from fleet.services.reconciler import Reconciler

    sims = enroll_many(fleet, secret, 5)
    for sim in sims:
        sim.sync(fleet, broker)
    clock.advance(days=23)
    before = len(broker.published)
    at_publishing_step: list[int] = []
    real_publish_due = fleet.delivery.publish_due

    def publish_due() -> int:
        at_publishing_step.append(len(broker.published) - before)
        return real_publish_due()

    monkeypatch.setattr(fleet.delivery, "publish_due", publish_due)
    summary = Reconciler(fleet.ctx, fleet.devices, fleet.delivery).run_pass()
    assert summary.rotated == len(sims) and summary.published == len(sims)
    assert at_publishing_step == [len(sims)]
    assert len(broker.published) - before == len(sims)
    for sim in sims:
        sim.sync(fleet, broker)
        assert sim.accepted == [1, 2]


def test_a_failed_early_publish_leaves_the_batch_rotated_once_and_pending(
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fleet.services.reconciler import Reconciler

    sims = enroll_many(fleet, secret, 3)
    for sim in sims:
        sim.sync(fleet, broker)
    clock.advance(days=23)
    real = fleet.delivery.publish_pending

    def fails_for_some_devices(device_pks=None, **kwargs):  # type: ignore[no-untyped-def]
        if device_pks is not None:
            raise RuntimeError("the database went away while publishing")
        return real(device_pks, **kwargs)

    monkeypatch.setattr(fleet.delivery, "publish_pending", fails_for_some_devices)
    summary = Reconciler(fleet.ctx, fleet.devices, fleet.delivery).run_pass()
    assert summary.rotated == len(sims) and summary.skipped == 0
    assert set(credential_versions(fleet).values()) == {2}  # rotated once, not redone
    assert summary.published == len(sims)  # by the publishing step
