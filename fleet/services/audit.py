"""Reading the audit log: filtered, newest first, in keyset pages over the primary key.

A page is one indexed query, whatever the log's size: ``id < before ORDER BY id DESC LIMIT n+1``
(or ``id > after`` ascending, reversed, for the page before). Filters are exact (actor,
action, a set of targets), a prefix (target) and a time range, each on an indexed column; a
device's timeline (its id and its token's name as targets) reads ``(target, id)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlmodel import col, select

from fleet.db.models import AuditEvent
from fleet.domain.errors import ValidationError
from fleet.services.context import ServiceContext

DEFAULT_PAGE = 50
MAX_PAGE = 500
EXPORT_BATCH = MAX_PAGE
MAX_FILTER_CHARS = 256
MAX_TARGETS = 8


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""  # a prefix
    since: datetime | None = None
    until: datetime | None = None
    targets: tuple[str, ...] = ()  # exact targets: one device's (or token's) timeline

    def __post_init__(self) -> None:
        if len(self.targets) > MAX_TARGETS or any(len(t) > MAX_FILTER_CHARS for t in self.targets):
            raise ValidationError(
                f"give at most {MAX_TARGETS} targets of {MAX_FILTER_CHARS} characters",
                code="InvalidFilter",
            )
        for name in ("actor", "action", "target"):
            if len(getattr(self, name)) > MAX_FILTER_CHARS:
                raise ValidationError(
                    f"the {name} filter has at most {MAX_FILTER_CHARS} characters",
                    code="InvalidFilter",
                )
        if self.since and self.until and self.since > self.until:
            raise ValidationError("'since' is after 'until'", code="InvalidFilter")


@dataclass(frozen=True, slots=True)
class AuditEventView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: tuple[AuditEventView, ...]
    newer: int | None  # pass as ``after`` for the page before this one
    older: int | None  # pass as ``before`` for the page after this one


def _view(row: AuditEvent) -> AuditEventView:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {"text": row.detail}
    return AuditEventView(
        id=int(row.id or 0),
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=detail if isinstance(detail, dict) else {"value": detail},
    )


def _filtered(query: Select[Any], f: AuditFilter) -> Select[Any]:
    if f.actor:
        query = query.where(AuditEvent.actor == f.actor)
    if f.action:
        query = query.where(AuditEvent.action == f.action)
    if f.target:
        escaped = f.target.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(AuditEvent.target).like(f"{escaped}%", escape="\\"))
    if f.targets:
        query = query.where(col(AuditEvent.target).in_(f.targets))
    if f.since:
        query = query.where(AuditEvent.at >= f.since)
    if f.until:
        query = query.where(AuditEvent.at <= f.until)
    return query


class AuditService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def page(
        self,
        f: AuditFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> AuditPage:
        """Newest first. ``before``: the page below that id; ``after``: the page above it."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"a page holds 1 to {MAX_PAGE} events", code="InvalidLimit")
        if before is not None and after is not None:
            raise ValidationError("give 'before' or 'after', not both", code="InvalidCursor")
        query = _filtered(select(AuditEvent), f)
        if after is not None:
            query = query.where(col(AuditEvent.id) > after).order_by(col(AuditEvent.id).asc())
        else:
            if before is not None:
                query = query.where(col(AuditEvent.id) < before)
            query = query.order_by(col(AuditEvent.id).desc())
        with self.ctx.db.session() as s:
            rows = list(s.exec(query.limit(limit + 1)).all())  # type: ignore[call-overload]
        more = len(rows) > limit
        rows = rows[:limit]
        if after is not None:
            rows.reverse()
        events = tuple(_view(r) for r in rows)
        if not events:
            return AuditPage(events, None, None)
        has_newer = more if after is not None else before is not None
        has_older = more if after is None else True
        return AuditPage(
            events,
            newer=events[0].id if has_newer else None,
            older=events[-1].id if has_older else None,
        )

    def export(self, f: AuditFilter) -> Iterator[AuditEventView]:
        """Every matching event, newest first, read in batches (for downloads)."""
        before: int | None = None
        while True:
            page = self.page(f, before=before, limit=EXPORT_BATCH)
            yield from page.events
            if page.older is None:
                return
            before = page.older
