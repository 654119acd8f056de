"""The device list: search by id prefix, filters, four sort orders, keyset pages.

A page is read in a fixed number of statements whatever the fleet's size: the group's id
(with a group filter), the groups' inactivity limits (with "not seen"), one or two reads of
the devices, and their pending deliveries. No statement counts the whole table.

Sorting by a time (last seen, expiry, enrolled) pages over ``(time, device id)``. A device
with no such time sorts after every dated one ascending and before them descending (the
exact reverse), which is also PostgreSQL's own NULL order for a btree read either way. The
dated and the undated devices are two segments read one after the other, each an index
range scan on ``(time, device_id)``: a page that ends the first segment reads the start of
the second. The cursor names the segment and the last row's key, and is bound to the
filters and the sort: a cursor of another list is refused.

The id prefix is a range, ``q <= device_id < successor(q)``: device ids are ASCII letters,
digits and hyphens and the column sorts by code point on both databases (``COLLATE "C"`` on
PostgreSQL, SQLite's binary order), so the range is exactly the ids that start with ``q``,
served by the device id's btree whatever the database's own collation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlmodel import Session, col, select

from fleet.db.devices import DEVICE_STATUSES, Device, DeviceGroup
from fleet.db.models import Token
from fleet.domain.errors import ValidationError
from fleet.services import device_filters as filters
from fleet.services.paging import Cursors

SORTS = {
    "device_id": None,
    "last_seen": "last_seen_at",
    "expiry": "active_expiry",
    "enrolled": "enrolled_at",
}
DIRECTIONS = ("asc", "desc")
MAX_PREFIX_CHARS = 46  # the longest device id
MAX_GROUP_CHARS = 64
_PREFIX = re.compile(r"[A-Za-z0-9-]*")
DATED, UNDATED = "v", "n"  # a cursor's segment


def _invalid(message: str, code: str = "InvalidFilter") -> ValidationError:
    return ValidationError(message, code=code)


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """Which devices, in which order. Checked when made: a bad one never reaches SQL."""

    q: str = ""  # device id prefix
    group: str | None = None
    status: str | None = None
    expiring: bool = False
    not_seen: bool = False
    pending: bool = False  # a delivery not yet acknowledged
    sort: str = "device_id"
    direction: str = "asc"

    def __post_init__(self) -> None:
        if len(self.q) > MAX_PREFIX_CHARS:
            raise _invalid(
                f"the device id prefix has at most {MAX_PREFIX_CHARS} characters "
                f"(got {len(self.q)})"
            )
        if _PREFIX.fullmatch(self.q) is None:
            raise _invalid(
                "a device id prefix has only letters, digits and hyphens "
                f"(got {self.q[:MAX_PREFIX_CHARS]!r})"
            )
        if self.group is not None and not 0 < len(self.group) <= MAX_GROUP_CHARS:
            raise _invalid(f"a group name has 1 to {MAX_GROUP_CHARS} characters")
        if self.status is not None and self.status not in DEVICE_STATUSES:
            raise _invalid(
                f"invalid status {self.status[:20]!r}: expected {', '.join(DEVICE_STATUSES)}",
                "InvalidStatus",
            )
        if self.sort not in SORTS:
            raise _invalid(
                f"invalid sort {self.sort[:20]!r}: expected {', '.join(SORTS)}", "InvalidSort"
            )
        if self.direction not in DIRECTIONS:
            raise _invalid(
                f"invalid direction {self.direction[:20]!r}: expected asc or desc", "InvalidSort"
            )

    @property
    def kind(self) -> str:
        """The list a cursor belongs to: every filter and the order."""
        return "devices:" + json.dumps(
            [self.q, self.group, self.status, self.expiring, self.not_seen, self.pending,
             self.sort, self.direction],
            separators=(",", ":"),
        )  # fmt: skip


QUERY_PARAMETERS = ("q", "group", "status", "expiring", "not_seen", "pending", "sort", "dir")
FLAG_VALUES = {"": False, "0": False, "false": False, "1": True, "true": True, "on": True}


def _flag(args: Mapping[str, str], name: str) -> bool:
    raw = args.get(name, "").strip().lower()
    if raw not in FLAG_VALUES:
        raise _invalid(f"'{name}' is 1 (or absent), not {raw[:20]!r}")
    return FLAG_VALUES[raw]


def parse_query(args: Mapping[str, str]) -> DeviceQuery:
    """A ``DeviceQuery`` from query parameters (the dashboard's URL and the REST list's),
    named as in ``QUERY_PARAMETERS``; a bad one raises a ValidationError."""

    def text(name: str) -> str:
        return args.get(name, "").strip()

    return DeviceQuery(
        q=text("q"),
        group=text("group") or None,
        status=text("status") or None,
        expiring=_flag(args, "expiring"),
        not_seen=_flag(args, "not_seen"),
        pending=_flag(args, "pending"),
        sort=text("sort") or "device_id",
        direction=text("dir") or "asc",
    )


def successor(prefix: str) -> str:
    """The least string above every string that starts with ``prefix`` (not empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _segments(query: DeviceQuery) -> list[str]:
    column = SORTS[query.sort]
    nullable = column is not None and Device.__table__.c[column].nullable  # type: ignore[attr-defined]
    if not nullable:
        return [DATED]
    return [DATED, UNDATED] if query.direction == "asc" else [UNDATED, DATED]


def _key(device: Device, query: DeviceQuery) -> tuple[str, str, str]:
    column = SORTS[query.sort]
    if column is None:
        return (DATED, "", device.device_id)
    value: datetime | None = getattr(device, column)
    if value is None:
        return (UNDATED, "", device.device_id)
    return (DATED, value.isoformat(), device.device_id)


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _invalid("the cursor is not valid for this list", "InvalidCursor") from None


# A device, its group's name, its token's name and when that token's registry access ends.
ListedRow = tuple[Device, str, str | None, datetime | None]


class DeviceLister:
    """Reads pages of devices for ``DeviceService.list`` (views built by ``make_view``)."""

    def __init__(self, cursors: Cursors) -> None:
        self.cursors = cursors

    def rows(
        self,
        s: Session,
        query: DeviceQuery,
        *,
        limit: int,
        cursor: str | None,
        now: datetime,
        expiry_days: int,
    ) -> tuple[list[ListedRow], str | None]:
        """Up to ``limit`` rows (device, group name, token name, when its registry access
        ends) and the next page's cursor."""
        after = self.cursors.decode(query.kind, cursor, (str, str, str)) if cursor else None
        segments = _segments(query)
        if after is not None and after[0] not in segments:
            raise _invalid("the cursor is not valid for this list", "InvalidCursor")
        base = self._filtered(s, query, now, expiry_days)
        if base is None:
            return [], None
        found: list[ListedRow] = []
        start = segments.index(after[0]) if after else 0
        for segment in segments[start:]:
            keyset = after if after is not None and after[0] == segment else None
            read = self._segment(base, query, segment, keyset).limit(limit + 1 - len(found))
            found.extend(s.exec(read).all())  # type: ignore[arg-type]
            if len(found) > limit:
                break
        keys = [_key(row[0], query) for row in found]
        return found[:limit], self.cursors.page(query.kind, keys, keys, limit).next_cursor

    @staticmethod
    def _filtered(
        s: Session, query: DeviceQuery, now: datetime, expiry_days: int
    ) -> Select[Any] | None:
        """The devices the filters keep, unordered; None when none can match."""
        devices = filters.table(Device)
        read = (
            select(Device, DeviceGroup.name, Token.name, Token.access_ends_at)
            .join(DeviceGroup, col(DeviceGroup.id) == col(Device.group_id))
            .join(Token, col(Token.id) == col(Device.token_id), isouter=True)
        )
        if query.group is not None:
            group_id = s.exec(select(DeviceGroup.id).where(DeviceGroup.name == query.group)).first()
            if group_id is None:
                return None
            read = read.where(devices.c.group_id == group_id)
        if query.status is not None:
            read = read.where(devices.c.status == query.status)
        if query.q:
            read = read.where(devices.c.device_id >= query.q)
            read = read.where(devices.c.device_id < successor(query.q))
        if query.expiring:
            read = read.where(*filters.expiring(now, expiry_days))
        if query.not_seen:
            limits: Sequence[filters.GroupLimit] = s.exec(filters.inactivity_limits()).all()  # type: ignore[call-overload]
            if not limits:
                return None
            read = read.where(filters.not_seen(limits, now))
        if query.pending:
            read = read.where(filters.awaiting_ack())
        return read  # type: ignore[no-any-return]

    @staticmethod
    def _segment(
        read: Select[Any], query: DeviceQuery, segment: str, after: tuple[Any, ...] | None
    ) -> Select[Any]:
        devices = filters.table(Device)
        device_id = devices.c.device_id
        desc = query.direction == "desc"
        name = SORTS[query.sort]
        if name is None or segment == UNDATED:
            order: list[ColumnElement[Any]] = [device_id]
            if name is not None:
                read = read.where(devices.c[name].is_(None))
            if after is not None:
                read = read.where(device_id < after[2] if desc else device_id > after[2])
        else:
            column = devices.c[name]
            order = [column, device_id]
            read = read.where(column.is_not(None))
            if after is not None:
                key = tuple_(column, device_id)
                bound = tuple_(_typed(column, _when(after[1])), after[2])
                read = read.where(key < bound if desc else key > bound)
        return read.order_by(*(c.desc() if desc else c.asc() for c in order))


def _typed(column: Any, value: datetime) -> Any:
    return literal(value, column.type)
