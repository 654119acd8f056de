"""The device list on SQLite and PostgreSQL: id prefixes, each filter as the overview counts
it, four sorts both ways across page boundaries (NULLs and equal times included), cursors
bound to their list, a constant number of statements per page, and bulk disable."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import col, select

from fleet.db.devices import (
    ACTIVE,
    DELIVERY_ACKED,
    DELIVERY_PENDING,
    DISABLED,
    PENDING,
    Delivery,
    Device,
)
from fleet.db.models import AuditEvent
from fleet.domain.errors import ValidationError
from fleet.services import Services
from fleet.services.audit import AuditFilter
from fleet.services.device_list import SORTS, DeviceQuery, successor
from fleet.services.devices import MAX_BULK
from fleet.services.groups import get_group
from fleet.services.paging import Page
from fleet.services.views import DeviceView
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker
from tests.support.statements import counted

PULL = "_repositories_pull"
ME = "test"
DAY = timedelta(days=1)
KEYS = new_device("any").keys  # a wipe is sealed to the device's key


@dataclass
class Row:
    device_id: str
    group: str = "east-side"
    status: str = ACTIVE
    last_seen: timedelta | None = None  # before now
    expiry: timedelta | None = None  # after now
    enrolled: timedelta = timedelta(days=100)  # before now
    pending: int = 0  # deliveries not acknowledged


def add(services: Services, rows: list[Row]) -> None:
    """Device rows written directly, as enrollment and deliveries leave them."""
    now = services.ctx.clock()
    with services.ctx.db.session() as s:
        groups: dict[str, int] = {}
        for row in rows:
            if row.group not in groups:
                groups[row.group] = get_group(s, row.group).id  # type: ignore[assignment]
            device = Device(
                device_id=row.device_id,
                group_id=groups[row.group],
                status=row.status,
                x25519_public=KEYS[0],
                ed25519_public=KEYS[1],
                mqtt_username=row.device_id,
                enrolled_at=now - row.enrolled,
                last_seen_at=None if row.last_seen is None else now - row.last_seen,
                active_expiry=None if row.expiry is None else now + row.expiry,
                active_slot="password1",
                last_version=1 + row.pending,
            )
            s.add(device)
            s.flush()
            states = [DELIVERY_ACKED] + [DELIVERY_PENDING] * row.pending
            for version, state in enumerate(states, start=1):
                s.add(
                    Delivery(
                        device_pk=device.id,
                        version=version,
                        kind="credentials",
                        topic="t",
                        state=state,
                        created_at=now,
                    )
                )


def walk(services: Services, query: DeviceQuery, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    for _ in range(10_000):
        page = services.devices.list(query, limit=limit, cursor=cursor)
        pages.append([d.device_id for d in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the walk never ended")


def ids(services: Services, limit: int = 100, **query: Any) -> list[str]:
    return [d for page in walk(services, DeviceQuery(**query), limit) for d in page]


@pytest.fixture
def fleet(services: Services) -> Services:
    services.broker = FakeBroker()
    services.groups.create("east-side", scope_map=PULL, actor=ME)
    services.groups.create("west-side", scope_map=PULL, inactivity_limit_days=7, actor=ME)
    services.groups.create("north-end", scope_map=PULL, inactivity_limit_days=30, actor=ME)
    return services


# -- prefixes --------------------------------------------------------------------------------
def test_successor() -> None:
    assert successor("pi-") == "pi."
    assert successor("a9") == "a:"
    assert successor("Z") == "["


PREFIX_IDS = ["pi-0001", "pi-0002", "pi-0010", "pi0001", "Pi-0003", "pix", "pi", "pj", "ph-9",
              "rpi-0001", "p", "PI-1", "pi-", "pi--x"]  # fmt: skip


@pytest.mark.parametrize("q", ["p", "pi", "pi-", "pi-0", "pi-001", "P", "PI-", "pi--", "x", "9"])
def test_a_prefix_finds_exactly_the_ids_that_start_with_it(fleet: Services, q: str) -> None:
    add(fleet, [Row(d) for d in PREFIX_IDS])
    expected = sorted(d for d in PREFIX_IDS if d.startswith(q))  # code-point order
    for limit in (1, 2, 100):
        assert ids(fleet, limit, q=q) == expected
    assert ids(fleet, q=q, sort="enrolled", direction="desc") == expected[::-1]  # equal times


def test_ids_sort_by_code_point_on_both_databases(fleet: Services) -> None:
    add(fleet, [Row(d) for d in PREFIX_IDS])
    assert ids(fleet, 3) == sorted(PREFIX_IDS)
    assert ids(fleet, 3, direction="desc") == sorted(PREFIX_IDS, reverse=True)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_the_prefix_is_an_index_range_in_code_point_order(
    fleet: Services,
) -> None:
    engine = fleet.ctx.db.engine
    with engine.connect() as conn:
        collation = conn.execute(
            text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'devices' "
                "AND column_name = 'device_id'"
            )
        ).scalar_one()
        assert collation == "C"  # whatever the database's own collation
        # Under a linguistic collation the range 'pi' <= id < 'pj' holds 'PI-1' (case is
        # only a tie-breaker there): which is why the column is compared by code point.
        in_range = "'PI-1' COLLATE \"{0}\" >= 'pi' AND 'PI-1' COLLATE \"{0}\" < 'pj'"
        linguistic = conn.execute(
            text(f"SELECT {in_range.format('en-US-x-icu')}, {in_range.format('C')}")
        ).one()
        assert tuple(linguistic) == (True, False)
    add(fleet, [Row(f"dev-{i:05d}") for i in range(2000)] + [Row(d) for d in PREFIX_IDS])
    with engine.connect() as conn:
        conn.execute(text("ANALYZE devices"))
    statements: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert ids(fleet, q="pi-00") == ["pi-0001", "pi-0002", "pi-0010"]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    listing, parameters = next(
        (s, p) for s, p in statements if "FROM devices" in s and "device_groups" in s
    )
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + listing, parameters).all())
    assert "Seq Scan on devices" not in plan, plan
    assert "ix_devices_device_id" in plan, plan


# -- filters ---------------------------------------------------------------------------------
def test_each_filter_keeps_what_the_overview_counts(fleet: Services) -> None:
    days = fleet.ctx.settings.expiry_warning_days
    add(
        fleet,
        [
            Row("a-expiring", expiry=timedelta(days=days) - timedelta(minutes=1)),
            Row("b-later", expiry=timedelta(days=days) + timedelta(minutes=1)),
            Row("c-off-expiring", status=DISABLED, expiry=timedelta(hours=1)),
            Row("d-silent", group="west-side", last_seen=8 * DAY),
            Row("e-recent", group="west-side", last_seen=6 * DAY),
            Row("f-never", group="west-side", enrolled=8 * DAY),
            Row("g-never-new", group="west-side", enrolled=6 * DAY),
            Row("h-no-limit", group="east-side", last_seen=300 * DAY),
            Row("i-north", group="north-end", last_seen=31 * DAY, pending=2),
            Row("j-off-silent", group="west-side", status=DISABLED, last_seen=9 * DAY),
            Row("k-pending", status=PENDING, pending=1),
            Row("l-waiting", pending=1),
        ],
    )
    assert ids(fleet, expiring=True) == ["a-expiring"]
    assert ids(fleet, not_seen=True) == ["d-silent", "f-never", "i-north"]
    assert ids(fleet, pending=True) == ["i-north", "k-pending", "l-waiting"]
    assert ids(fleet, status=DISABLED) == ["c-off-expiring", "j-off-silent"]
    assert ids(fleet, status=PENDING) == ["k-pending"]
    assert ids(fleet, group="west-side", not_seen=True) == ["d-silent", "f-never"]
    assert ids(fleet, not_seen=True, pending=True) == ["i-north"]
    assert ids(fleet, q="j", status=DISABLED, group="west-side") == ["j-off-silent"]
    assert ids(fleet, group="nowhere") == []

    counters = fleet.overview.page().counters
    for count, query in (
        (counters.active, {"status": ACTIVE}),
        (counters.disabled, {"status": DISABLED}),
        (counters.pending_approval, {"status": PENDING}),
        (counters.expiring, {"expiring": True}),
        (counters.not_seen, {"not_seen": True}),
        (counters.devices_awaiting_ack, {"pending": True}),
    ):
        assert len(ids(fleet, 2, **query)) == count, query


def test_not_seen_without_any_group_limit_is_empty(services: Services) -> None:
    services.groups.create("east-side", scope_map=PULL, actor=ME)
    add(services, [Row("a", last_seen=900 * DAY)])
    assert ids(services, not_seen=True) == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"q": "pi_"}, "InvalidFilter"),
        ({"q": "pi%"}, "InvalidFilter"),
        ({"q": "p" * 47}, "InvalidFilter"),
        ({"status": "asleep"}, "InvalidStatus"),
        ({"sort": "name"}, "InvalidSort"),
        ({"direction": "sideways"}, "InvalidSort"),
        ({"group": ""}, "InvalidFilter"),
    ],
)
def test_bad_queries_are_refused(query: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DeviceQuery(**query)
    assert caught.value.code == code


# -- sorts and pages -----------------------------------------------------------------------
def _sorted(rows: list[Row], sort: str, now: datetime, direction: str) -> list[str]:
    """The order the list promises: by the time then the id, undated last ascending."""
    if SORTS[sort] is None:
        keyed = sorted(rows, key=lambda r: r.device_id)
    else:

        def value(r: Row) -> datetime | None:
            return {
                "last_seen": None if r.last_seen is None else now - r.last_seen,
                "expiry": None if r.expiry is None else now + r.expiry,
                "enrolled": now - r.enrolled,
            }[sort]

        dated = sorted(
            (r for r in rows if value(r) is not None), key=lambda r: (value(r), r.device_id)
        )
        undated = sorted((r for r in rows if value(r) is None), key=lambda r: r.device_id)
        keyed = dated + undated
    order = [r.device_id for r in keyed]
    return order if direction == "asc" else order[::-1]


def _random_rows(n: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    hours = [timedelta(hours=h) for h in (1, 2, 2, 5, 30)]  # equal times on purpose
    return [
        Row(
            f"d{rng.randrange(10**6):06d}-{i}",
            last_seen=rng.choice([None, *hours]),
            expiry=rng.choice([None, *hours]),
            enrolled=rng.choice(hours) + timedelta(microseconds=rng.choice([0, 1, 500_000])),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("sort", list(SORTS))
def test_every_sort_both_ways_across_pages_loses_and_repeats_nothing(
    fleet: Services, clock: FakeClock, sort: str
) -> None:
    rows = _random_rows(23, seed=len(sort))
    add(fleet, rows)
    for direction in ("asc", "desc"):
        expected = _sorted(rows, sort, clock(), direction)
        for limit in (1, 2, 5, 22, 23, 100):
            pages = walk(fleet, DeviceQuery(sort=sort, direction=direction), limit)
            assert [d for page in pages for d in page] == expected, (direction, limit)
            assert all(len(page) == limit for page in pages[:-1])


def test_a_sort_with_filters_pages_within_them(fleet: Services, clock: FakeClock) -> None:
    rows = _random_rows(30, seed=7)
    for i, row in enumerate(rows):
        row.status = DISABLED if i % 3 == 0 else ACTIVE
    add(fleet, rows)
    active = [r for r in rows if r.status == ACTIVE]
    for direction in ("asc", "desc"):
        query = DeviceQuery(status=ACTIVE, sort="last_seen", direction=direction)
        assert [d for p in walk(fleet, query, 3) for d in p] == _sorted(
            active, "last_seen", clock(), direction
        )


def test_rows_that_change_between_pages_never_shift_the_rest(fleet: Services) -> None:
    add(fleet, [Row(f"d{i:02d}", last_seen=timedelta(hours=i)) for i in range(10)])
    query = DeviceQuery(sort="last_seen", direction="desc")  # the most recently seen first
    first = fleet.devices.list(query, limit=4)
    assert [d.device_id for d in first.items] == ["d00", "d01", "d02", "d03"]
    fleet.devices.touch("d02", fleet.ctx.clock())  # seen again: stays behind the cursor
    fleet.devices.touch("d06", fleet.ctx.clock())  # moves ahead of the cursor: not repeated
    add(fleet, [Row("d99", last_seen=timedelta(hours=100))])  # the longest silent: at the end
    rest = [d for p in walk_from(fleet, query, first.next_cursor) for d in p]
    assert rest == ["d04", "d05", "d07", "d08", "d09", "d99"]


def walk_from(services: Services, query: DeviceQuery, cursor: str | None) -> list[list[str]]:
    pages = []
    while cursor is not None:
        page = services.devices.list(query, limit=4, cursor=cursor)
        pages.append([d.device_id for d in page.items])
        cursor = page.next_cursor
    return pages


def test_a_cursor_belongs_to_its_filters_and_its_sort(fleet: Services) -> None:
    add(fleet, [Row(f"d{i}", last_seen=timedelta(hours=i)) for i in range(5)])
    query = DeviceQuery(q="d", status=ACTIVE, sort="last_seen", direction="desc")
    cursor = fleet.devices.list(query, limit=2).next_cursor
    assert cursor is not None
    assert len(fleet.devices.list(query, limit=2, cursor=cursor).items) == 2
    others = [
        DeviceQuery(),
        DeviceQuery(q="d", status=ACTIVE, sort="last_seen"),  # the other way
        DeviceQuery(q="d", status=ACTIVE, sort="expiry", direction="desc"),
        DeviceQuery(q="d1", status=ACTIVE, sort="last_seen", direction="desc"),
        DeviceQuery(q="d", sort="last_seen", direction="desc"),
        DeviceQuery(q="d", status=ACTIVE, sort="last_seen", direction="desc", pending=True),
        DeviceQuery(q="d", status=ACTIVE, sort="last_seen", direction="desc", expiring=True),
        DeviceQuery(q="d", status=ACTIVE, sort="last_seen", direction="desc", not_seen=True),
        DeviceQuery(q="d", status=ACTIVE, sort="last_seen", direction="desc", group="east-side"),
    ]
    for other in others:
        with pytest.raises(ValidationError) as caught:
            fleet.devices.list(other, limit=2, cursor=cursor)
        assert caught.value.code == "InvalidCursor", other
        assert "pass back, unchanged, the nextCursor" in caught.value.message
    with pytest.raises(ValidationError):
        fleet.devices.list(query, cursor=cursor[:-1] + ("A" if cursor[-1] != "A" else "B"))


# -- statements per page ---------------------------------------------------------------------
QUERIES = {
    "by id": (DeviceQuery(), 2),
    "a prefix": (DeviceQuery(q="d"), 2),
    "a group": (DeviceQuery(group="west-side"), 3),
    "a status": (DeviceQuery(status=ACTIVE), 2),
    "expiring": (DeviceQuery(expiring=True), 2),
    "not seen": (DeviceQuery(not_seen=True), 3),
    "pending": (DeviceQuery(pending=True), 2),
    "last seen": (DeviceQuery(sort="last_seen"), 2),
    "last seen, reaching the undated": (DeviceQuery(sort="last_seen"), 3),
    "expiry desc": (DeviceQuery(sort="expiry", direction="desc"), 2),
    "enrolled": (DeviceQuery(sort="enrolled", direction="desc"), 2),
    "everything": (
        DeviceQuery(q="d", group="west-side", status=ACTIVE, expiring=True, not_seen=True,
                    pending=True, sort="last_seen", direction="desc"),
        4,
    ),
}  # fmt: skip


def _fleet_of(services: Services, n: int) -> None:
    """n silent, expiring, waiting devices of west-side; half of them never seen."""
    add(
        services,
        [
            Row(
                f"d{i:04d}",
                group="west-side",
                last_seen=None if i % 2 else timedelta(days=8, hours=i),
                expiry=timedelta(hours=1 + i),
                enrolled=timedelta(days=10, hours=i),
                pending=1 + i % 3,
            )
            for i in range(n)
        ],
    )


@pytest.mark.parametrize("what", list(QUERIES))
def test_the_statements_per_page_do_not_grow_with_the_fleet(
    make_services: Callable[..., Services], what: str
) -> None:
    query, expected = QUERIES[what]
    counts = []
    for n in (10, 200):
        services = make_services()
        services.groups.create("west-side", scope_map=PULL, inactivity_limit_days=7, actor=ME)
        _fleet_of(services, n)
        limit = 2 if what != "last seen, reaching the undated" else n // 2 - 1
        first = services.devices.list(query, limit=limit)
        assert len(first.items) == limit and first.next_cursor
        with counted(services) as statements:
            page: Page[DeviceView] = services.devices.list(
                query, limit=limit, cursor=first.next_cursor
            )
        assert len(page.items) == limit
        counts.append(len(statements))
    assert counts == [expected, expected], what


# -- bulk disable and the timeline -----------------------------------------------------------
def test_disable_many_reports_each_device(fleet: Services) -> None:
    # Ids of the one device-id rule (3-46 characters), which the envelope's wipe checks too.
    a, b, c, d = "pi-a", "pi-b", "pi-c", "pi-d"
    add(fleet, [Row(a), Row(b), Row(c, status=DISABLED), Row(d, status=PENDING)])
    broker: FakeBroker = fleet.broker  # type: ignore[assignment]
    for device_id in (a, b, c, d):
        broker.provision_device(device_id, device_id, "pw")
    results = fleet.devices.disable_many(
        [a, b, a, c, "gone", d], actor="operator:alice", reason="stolen van"
    )
    assert [(r.device_id, r.outcome) for r in results] == [
        (a, "disabled"),
        (b, "disabled"),
        (c, "already disabled"),
        ("gone", "not found"),
        (d, "disabled"),
    ]
    assert {d.device_id: d.status for d in fleet.devices.list().items} == dict.fromkeys(
        (a, b, c, d), DISABLED
    )
    assert {u for u, login in broker.logins.items() if not login["enabled"]} == {a, b, d}
    with fleet.ctx.db.session() as s:
        events = s.exec(
            select(AuditEvent)
            .where(col(AuditEvent.action).startswith("device."))
            .order_by(col(AuditEvent.id))
        ).all()
    assert [(e.actor, e.action, e.target) for e in events] == [
        ("operator:alice", "device.disable", target) for target in (a, b, d)
    ]
    assert all(json.loads(e.detail) == {"reason": "stolen van"} for e in events)


@pytest.mark.parametrize("count", [0, MAX_BULK + 1])
def test_disable_many_is_bounded(fleet: Services, count: int) -> None:
    add(fleet, [Row(f"d{i:03d}") for i in range(count)])
    with pytest.raises(ValidationError) as caught:
        fleet.devices.disable_many([f"d{i:03d}" for i in range(count)], actor=ME, reason="x")
    assert caught.value.code == "InvalidSelection"
    assert all(d.status == ACTIVE for d in fleet.devices.list(limit=1000).items)


def test_a_timeline_is_its_exact_targets(fleet: Services) -> None:
    add(fleet, [Row("pi-1"), Row("pi-10")])
    fleet.broker.provision_device("pi-1", "pi-1", "pw")  # type: ignore[attr-defined]
    fleet.devices.allow_reenroll("pi-1", actor=ME)
    fleet.devices.allow_reenroll("pi-10", actor=ME)
    fleet.devices.disable("pi-1", actor=ME, reason="x")
    page = fleet.audit.page(AuditFilter(targets=("pi-1", "dev-pi-1")))
    assert [(e.action, e.target) for e in page.events] == [
        ("device.disable", "pi-1"),
        ("device.allow-reenroll", "pi-1"),
    ]
    with pytest.raises(ValidationError):
        AuditFilter(targets=tuple(f"t{i}" for i in range(9)))
