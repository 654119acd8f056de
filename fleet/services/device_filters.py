"""What "expiring soon", "not seen" and "delivery pending" mean: one definition each.

The overview counts these devices and the device list shows them; both build their
statements from the clauses here, so a counter and the list it links to always agree.
Every clause is on the ``devices`` (or ``deliveries``) table's columns and served by an
index: ``ix_devices_status_expiry``, ``ix_devices_status_group_last_seen`` and
``ix_deliveries_state_device_pk``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, false, or_, select

from fleet.db.devices import ACTIVE, DELIVERY_PENDING, Delivery, Device, DeviceGroup

GroupLimit = tuple[int, int]  # a group's id and its inactivity limit in days


def table(model: Any) -> Table:
    found: Table = model.__table__
    return found


def expiring(now: datetime, days: int) -> tuple[ColumnElement[bool], ...]:
    """Active devices whose password in use expires within the warning window."""
    devices = table(Device)
    return (devices.c.status == ACTIVE, devices.c.active_expiry < now + timedelta(days=days))


def inactivity_limits() -> Select[Any]:
    """The groups that have an inactivity limit: ``(group id, days)`` rows."""
    groups = table(DeviceGroup)
    return select(groups.c.id, groups.c.inactivity_limit_days).where(
        groups.c.inactivity_limit_days.is_not(None)
    )


def not_seen_parts(
    group_id: int, days: int, now: datetime
) -> tuple[tuple[ColumnElement[bool], ...], tuple[ColumnElement[bool], ...]]:
    """Two disjoint conditions on one group's active devices silent beyond its limit: last
    seen before the cutoff, or never seen and enrolled before it (as the scheduler counts)."""
    devices = table(Device)
    cutoff = now - timedelta(days=days)
    mine = (devices.c.status == ACTIVE, devices.c.group_id == group_id)
    return (
        (*mine, devices.c.last_seen_at < cutoff),
        (*mine, devices.c.last_seen_at.is_(None), devices.c.enrolled_at < cutoff),
    )


def not_seen(limits: Sequence[GroupLimit], now: datetime) -> ColumnElement[bool]:
    """Any group's silent devices, as one condition (false when no group has a limit)."""
    parts = [and_(*part) for g, days in limits for part in not_seen_parts(g, days, now)]
    return or_(false(), *parts)


def delivery_pending() -> ColumnElement[bool]:
    """A delivery the device has not acknowledged yet."""
    return table(Delivery).c.state == DELIVERY_PENDING


def awaiting_ack() -> ColumnElement[bool]:
    """Devices with at least one delivery pending."""
    deliveries = table(Delivery)
    pending = select(deliveries.c.device_pk).where(delivery_pending())
    return table(Device).c.id.in_(pending)
