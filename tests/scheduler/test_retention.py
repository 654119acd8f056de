"""Finished deliveries and audit events are pruned after their retention, in batches, by the
scheduler's leader; pending deliveries and young rows stay (issue 12, defect 7)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlmodel import col, select

from fleet.db.devices import (
    DELIVERY_ACKED,
    DELIVERY_PENDING,
    DELIVERY_SUPERSEDED,
    Delivery,
    Device,
)
from fleet.db.models import AuditEvent
from fleet.scheduler import RETENTION_JOB_ID
from fleet.services import Services
from fleet.services.retention import PRUNED, RetentionService
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory
from tests.services.devices.conftest import new_device

DAY = timedelta(days=1)


def seed(fleet: Services, secret: str, now: datetime, per_kind: int) -> dict[str, set[int]]:
    """Deliveries of every state and age, and audit events of every age; the ids of the
    rows that must go and of those that must stay."""
    fleet.devices.enroll("keep-0001", secret, *new_device("keep-0001").keys)
    keep: set[int] = set()
    gone: set[int] = set()
    with fleet.ctx.db.session() as s:
        device = s.exec(select(Device).where(Device.device_id == "keep-0001")).one()
        keep |= set(s.exec(select(Delivery.id).where(Delivery.device_pk == device.id)).all())
        version = 100
        rows: list[tuple[Delivery, bool]] = []
        for i in range(per_kind):
            for kind in ("credentials", "command"):
                old, young = now - 31 * DAY - i * DAY, now - 29 * DAY
                made = (
                    (DELIVERY_ACKED, old, old, False),
                    (DELIVERY_SUPERSEDED, old, None, False),
                    (DELIVERY_PENDING, old, None, True),  # owed to the device: never pruned
                    (DELIVERY_ACKED, young, young, True),
                    (DELIVERY_SUPERSEDED, young, None, True),
                    (DELIVERY_ACKED, old, young, True),  # created long ago, acked lately
                )
                for state, created, acked, kept in made:
                    version += 1
                    row = Delivery(
                        device_pk=device.id,  # type: ignore[arg-type]
                        version=version,
                        kind=kind,
                        topic="t",
                        state=state,
                        created_at=created,
                        acked_at=acked,
                    )
                    s.add(row)
                    rows.append((row, kept))
        audits: list[tuple[AuditEvent, bool]] = []
        for i in range(per_kind * 3):
            for age, kept in ((401 * DAY + i * DAY, False), (399 * DAY, True)):
                event = AuditEvent(at=now - age, actor="t", action="t.seed", target=f"x{i}")
                s.add(event)
                audits.append((event, kept))
        s.flush()
        for row, kept in rows:
            (keep if kept else gone).add(row.id)  # type: ignore[arg-type]
        audit_keep = {e.id for e, kept in audits if kept}
        audit_gone = {e.id for e, kept in audits if not kept}
    return {"keep": keep, "gone": gone, "audit_keep": audit_keep, "audit_gone": audit_gone}  # type: ignore[dict-item]


def remaining(fleet: Services) -> tuple[set[int], set[int]]:
    with fleet.ctx.db.session() as s:
        deliveries = set(s.exec(select(Delivery.id)).all())
        events = set(s.exec(select(AuditEvent.id)).all())
    return deliveries, events  # type: ignore[return-value]


def test_old_finished_rows_go_in_batches_and_pending_and_young_ones_stay(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    ids = seed(fleet, secret, clock(), per_kind=12)
    service = RetentionService(fleet.ctx, batch=5, max_batches=100)
    summary = service.prune()
    deliveries, events = remaining(fleet)
    assert ids["gone"] and not deliveries & ids["gone"]
    assert ids["keep"] <= deliveries
    assert ids["audit_gone"] and not events & ids["audit_gone"]
    assert ids["audit_keep"] <= events
    assert summary.deliveries == len(ids["gone"]) == 48
    assert summary.audit_events == len(ids["audit_gone"]) == 36
    assert not summary.more
    with fleet.ctx.db.session() as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == PRUNED)).one()
    assert json.loads(event.detail) == {"auditEvents": 36, "deliveries": 48, "more": False}
    # Nothing more to do: no rows, and no audit event for an empty pass.
    assert service.prune().total == 0
    assert remaining(fleet) == (deliveries, events)


def test_a_pass_is_bounded_and_the_next_goes_on(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    ids = seed(fleet, secret, clock(), per_kind=12)
    service = RetentionService(fleet.ctx, batch=4, max_batches=2)  # 8 rows a kind a pass
    first = service.prune()
    assert first.more and first.audit_events == 8
    assert first.deliveries == 8 + 8 + 8  # acked; superseded credentials; superseded commands
    passes = 1
    while service.prune().more:
        passes += 1
    deliveries, events = remaining(fleet)
    assert not deliveries & ids["gone"] and ids["keep"] <= deliveries
    assert not events & ids["audit_gone"] and ids["audit_keep"] <= events
    assert passes >= 4  # 36 audit events at 8 a pass


def test_retention_follows_the_settings(make_services, broker, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    fleet: Services = make_services(delivery_retention_days=2, audit_retention_days=5)
    fleet.broker = broker
    with fleet.ctx.db.session() as s:
        for days in (1, 3, 4, 6):
            s.add(AuditEvent(at=clock() - days * DAY, actor="t", action="t.seed", target="x"))
    assert RetentionService(fleet.ctx).prune().audit_events == 1
    with fleet.ctx.db.session() as s:
        left = s.exec(
            select(AuditEvent.at).where(AuditEvent.action == "t.seed").order_by(col(AuditEvent.at))
        ).all()
    assert [clock() - at for at in left] == [4 * DAY, 3 * DAY, 1 * DAY]


def test_the_leader_prunes_on_its_schedule_and_a_follower_does_not(
    make_scheduler: SchedulerFactory, fleet: Services, secret: str, clock: FakeClock
) -> None:
    ids = seed(fleet, secret, clock(), per_kind=2)

    class Follower:
        def acquire(self) -> bool:
            return False

        def release(self) -> None:
            return None

    assert make_scheduler(fleet, Follower()).prune() is None  # type: ignore[arg-type]
    assert ids["gone"] <= remaining(fleet)[0]
    leader = make_scheduler(fleet)
    summary = leader.prune()
    assert summary is not None and summary.deliveries == len(ids["gone"])
    leader.start()
    try:
        job = leader._scheduler.get_job(RETENTION_JOB_ID)  # type: ignore[union-attr]
        assert job is not None
        assert job.trigger.interval == timedelta(
            seconds=fleet.ctx.settings.retention_interval_seconds
        )
    finally:
        leader.stop()
