"""The overview's figures: what is expiring, what fails, and what the fleet did this week.

Everything is read on one connection in a fixed number of aggregate queries (about a dozen,
whatever the fleet's size), each an index range scan or an index-only count:

- devices by status (``ix_devices_status``), expiring credentials (``ix_devices_status_expiry``)
  and devices not seen beyond their group's limit (``ix_devices_status_group_last_seen``);
- deliveries not acknowledged (``ix_deliveries_state_next_attempt``);
- failed registry logins from ``login_failures_hourly`` (its primary key starts with the hour);
- the 7-day chart: rotations (credentials deliveries after a device's first,
  ``ix_deliveries_kind_created_at``) and acknowledgements (``ix_deliveries_acked_at``) are
  grouped by hour in SQL for the current hour only, and so are failed logins (from
  ``login_failures_hourly``); an hour that has ended is counted once and kept in
  ``activity_hourly``, so a page reads 168 small rows instead of a week of rows;
- the scheduler's last pass (``scheduler_runs`` by primary key).

A rotation is a credentials envelope with a version above 1: a device's first envelope is
the password it was enrolled (or approved) with; every later one replaced a password, whether
the scheduler rotated it, an operator asked for "Rotate now", or a lost store was refilled.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, desc, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from device_agent.protocol import Kind
from fleet.db.devices import ACTIVE, Delivery, Device
from fleet.db.models import ActivityHourly, LoginFailureHourly, SchedulerRun
from fleet.services import device_filters as filters
from fleet.services.context import ServiceContext
from fleet.services.health import KIND_ADDRESS, KIND_TOKEN

CHART_HOURS = 7 * 24
FAILURE_WINDOW = timedelta(hours=24)
TOP_FAILURES = 5
HOUR = timedelta(hours=1)
# An hour is counted for good (into activity_hourly) once it ended this long ago: time for
# the transactions that wrote in it to commit, and for the servers' clocks to disagree.
SETTLE = timedelta(minutes=5)
KEEP_EXTRA = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Counters:
    active: int
    pending_approval: int
    disabled: int
    expiring: int
    expiring_days: int
    devices_awaiting_ack: int
    deliveries_unacked: int
    not_seen: int
    failed_logins_24h: int


@dataclass(frozen=True, slots=True)
class HourPoint:
    hour: datetime  # the hour's start, UTC
    rotations: int
    acked: int
    failed_logins: int


@dataclass(frozen=True, slots=True)
class RunView:
    started_at: datetime
    finished_at: datetime | None
    node: str
    summary: dict[str, int]
    error: str | None


@dataclass(frozen=True, slots=True)
class SchedulerState:
    enabled: bool
    interval_seconds: int
    last_run: RunView | None
    # The node whose pass started within two intervals: the one holding the lock.
    leader: str | None


@dataclass(frozen=True, slots=True)
class BrokerState:
    state: str  # "connected", "disconnected", "not connected yet", "not configured"
    detail: str


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    counters: Counters
    top_tokens: list[tuple[str, int]]
    top_addresses: list[tuple[str, int]]
    chart: list[HourPoint] = field(default_factory=list)
    scheduler: SchedulerState | None = None
    broker: BrokerState | None = None


class HasConnectionState(Protocol):
    def connection_state(self) -> tuple[str, str]: ...


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def hour_floor(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


class OverviewService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def page(self, broker: object | None = None) -> Overview:
        """Every figure of the overview, read on one connection."""
        now = self.ctx.clock()
        with self.ctx.db.engine.connect() as conn:
            counters = self._counters(conn, now)
            since = hour_floor(now - FAILURE_WINDOW)
            tokens = self._top(conn, KIND_TOKEN, since)
            addresses = self._top(conn, KIND_ADDRESS, since)
            chart = self._chart(conn, now)
            scheduler = self._scheduler(conn, now)
        return Overview(
            now=now,
            counters=counters,
            top_tokens=tokens,
            top_addresses=addresses,
            chart=chart,
            scheduler=scheduler,
            broker=broker_state(self.ctx.settings.mqtt_url, broker),
        )

    # --- counters ------------------------------------------------------------------------

    def _counters(self, conn: Connection, now: datetime) -> Counters:
        devices, deliveries = _table(Device), _table(Delivery)
        by_status = dict(
            conn.execute(select(devices.c.status, func.count()).group_by(devices.c.status)).all()
        )
        days = self.ctx.settings.expiry_warning_days
        expiring = conn.execute(
            select(func.count()).where(*filters.expiring(now, days))
        ).scalar_one()
        awaiting, unacked = conn.execute(
            select(func.count(func.distinct(deliveries.c.device_pk)), func.count()).where(
                filters.delivery_pending()
            )
        ).one()
        failures = _table(LoginFailureHourly)
        failed = conn.execute(
            select(func.coalesce(func.sum(failures.c.count), 0)).where(
                failures.c.kind == KIND_ADDRESS,
                failures.c.hour >= hour_floor(now - FAILURE_WINDOW),
            )
        ).scalar_one()
        return Counters(
            active=int(by_status.get(ACTIVE, 0)),
            pending_approval=int(by_status.get("pending", 0)),
            disabled=int(by_status.get("disabled", 0)),
            expiring=int(expiring),
            expiring_days=days,
            devices_awaiting_ack=int(awaiting),
            deliveries_unacked=int(unacked),
            not_seen=self._not_seen(conn, now),
            failed_logins_24h=int(failed),
        )

    @staticmethod
    def _not_seen(conn: Connection, now: datetime) -> int:
        """Active devices silent for longer than their group allows (as the scheduler counts).

        One statement adding up two index range counts per group with a limit (last seen
        before the cutoff; never seen and enrolled before it), on (status, group, last seen).
        """
        limits: Sequence[tuple[int, int]] = conn.execute(filters.inactivity_limits()).all()
        if not limits:
            return 0
        counts = [
            select(func.count()).where(*part).scalar_subquery()
            for group_id, days in limits
            for part in filters.not_seen_parts(group_id, days, now)
        ]
        total = functools.reduce(operator.add, counts)
        return int(conn.execute(select(total)).scalar_one())

    @staticmethod
    def _top(conn: Connection, kind: str, since: datetime) -> list[tuple[str, int]]:
        table = _table(LoginFailureHourly)
        total = func.sum(table.c.count).label("total")
        query = (
            select(table.c.key, total)
            .where(table.c.kind == kind, table.c.hour >= since)
            .group_by(table.c.key)
            .order_by(desc(total), table.c.key)
            .limit(TOP_FAILURES)
        )
        return [(key, int(count)) for key, count in conn.execute(query)]

    # --- the chart -----------------------------------------------------------------------

    def _chart(self, conn: Connection, now: datetime) -> list[HourPoint]:
        first = hour_floor(now) - (CHART_HOURS - 1) * HOUR
        hours = [first + i * HOUR for i in range(CHART_HOURS)]
        # Hours before this one have ended long enough ago for no late write to land in them.
        live_from = hour_floor(now - SETTLE)
        activity = _table(ActivityHourly)
        kept = conn.execute(select(activity).where(activity.c.hour >= first))
        stored = {_utc(r.hour): (r.rotations, r.acked, r.failed_logins) for r in kept}
        missing = [h for h in hours if h < live_from and h not in stored]
        if missing:
            stored |= self._settle(conn, missing, first)
        live = _activity(conn, live_from, None)
        points = []
        for h in hours:
            figures = stored.get(h) or tuple(series.get(h, 0) for series in live)
            points.append(HourPoint(h, *figures))
        return points

    @staticmethod
    def _settle(
        conn: Connection, missing: list[datetime], first: datetime
    ) -> dict[datetime, tuple[int, int, int]]:
        """Count ended hours once and keep them in ``activity_hourly``."""
        series = _activity(conn, min(missing), max(missing) + HOUR)
        counted = {h: tuple(s.get(h, 0) for s in series) for h in missing}
        activity = _table(ActivityHourly)
        rows = [
            {"hour": h, "rotations": r, "acked": a, "failed_logins": f}
            for h, (r, a, f) in counted.items()
        ]
        insert = _insert(conn.dialect.name, activity).on_conflict_do_nothing(
            index_elements=[activity.c.hour]
        )
        conn.execute(insert, rows)  # another server may have just done the same: no matter
        conn.execute(activity.delete().where(activity.c.hour < first - KEEP_EXTRA))
        conn.commit()
        return counted  # type: ignore[return-value]

    # --- the scheduler ---------------------------------------------------------------------

    def _scheduler(self, conn: Connection, now: datetime) -> SchedulerState:
        settings = self.ctx.settings
        runs = _table(SchedulerRun)
        row = conn.execute(select(runs).order_by(desc(runs.c.id)).limit(1)).first()
        interval = settings.scheduler_interval_seconds
        last = None
        leader = None
        if row is not None:
            last = RunView(
                started_at=_utc(row.started_at),
                finished_at=_utc(row.finished_at) if row.finished_at else None,
                node=row.node,
                summary=json.loads(row.summary or "{}"),
                error=row.error,
            )
            if now - last.started_at <= timedelta(seconds=2 * interval):
                leader = last.node
        return SchedulerState(
            enabled=settings.scheduler_enabled.lower() in ("1", "true", "yes", "on"),
            interval_seconds=interval,
            last_run=last,
            leader=leader,
        )


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's strftime
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    result: datetime = value.astimezone(UTC)
    return result


def _hour_of(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:00:00", column)


def _per_hour(conn: Connection, column: Any, *where: Any) -> dict[datetime, int]:
    hour = _hour_of(conn.dialect.name, column).label("hour")
    rows = conn.execute(select(hour, func.count()).where(*where).group_by(hour))
    return {_utc(h): int(n) for h, n in rows}


def _activity(
    conn: Connection, since: datetime, until: datetime | None
) -> tuple[dict[datetime, int], dict[datetime, int], dict[datetime, int]]:
    """Rotations, acknowledgements and failed logins per hour in [since, until), each by an
    index range scan. A rotation is a credentials envelope after a device's first."""
    deliveries, failures = _table(Delivery), _table(LoginFailureHourly)
    created, acked_at, hour = deliveries.c.created_at, deliveries.c.acked_at, failures.c.hour
    rotations = _per_hour(
        conn,
        created,
        deliveries.c.kind == Kind.CREDENTIALS.value,
        deliveries.c.version > 1,
        created >= since,
        *([created < until] if until else []),
    )
    acked = _per_hour(conn, acked_at, acked_at >= since, *([acked_at < until] if until else []))
    failed = {
        hour_floor(_utc(h)): int(count)
        for h, count in conn.execute(
            select(hour, func.sum(failures.c.count))
            .where(
                failures.c.kind == KIND_ADDRESS, hour >= since, *([hour < until] if until else [])
            )
            .group_by(hour)
        )
    }
    return rotations, acked, failed


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def broker_state(mqtt_url: str, broker: object | None) -> BrokerState:
    """What this process knows of its broker connection (it connects on first use)."""
    if not mqtt_url:
        return BrokerState("not configured", "set FLEET_MQTT_URL to deliver credentials")
    state = getattr(broker, "connection_state", None)
    if broker is None or state is None:
        return BrokerState("not connected yet", f"{mqtt_url}: connects on first use")
    current, detail = state()
    return BrokerState(current, detail)
