"""The audit log: filter by actor, action, target prefix and time; keyset pages; downloads."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, render_template, request
from werkzeug.datastructures import MultiDict

from fleet.domain.errors import ValidationError
from fleet.services.audit import DEFAULT_PAGE, MAX_PAGE, AuditEventView, AuditFilter
from fleet.web.blueprint import web
from fleet.web.format import is_whole
from fleet.web.session import services

FILTERS = ("actor", "action", "target", "since", "until")
CSV_FIELDS = ("id", "at", "actor", "action", "target", "detail")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_CURSOR = 2**63 - 1


def _time(args: MultiDict[str, str], name: str) -> datetime | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            f"'{name}' is a time such as 2026-12-02T14:00 (UTC); got {raw[:40]!r}",
            code="InvalidFilter",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _int(args: MultiDict[str, str], name: str, low: int, high: int) -> int | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    if not is_whole(raw, len(str(high))) or not low <= int(raw) <= high:
        raise ValidationError(f"'{name}' is a whole number from {low} to {high}", code="Invalid")
    return int(raw)


def _filter(args: MultiDict[str, str]) -> AuditFilter:
    return AuditFilter(
        actor=args.get("actor", "").strip(),
        action=args.get("action", "").strip(),
        target=args.get("target", "").strip(),
        since=_time(args, "since"),
        until=_time(args, "until"),
    )


@web.get("/audit")
def audit() -> Any:
    args = request.args
    f = _filter(args)
    page = services().audit.page(
        f,
        before=_int(args, "before", 1, MAX_CURSOR),
        after=_int(args, "after", 0, MAX_CURSOR),
        limit=_int(args, "limit", 1, MAX_PAGE) or DEFAULT_PAGE,
    )
    kept = {k: args[k] for k in FILTERS if args.get(k)}
    return render_template("audit.html", page=page, filters=kept, now=datetime.now(UTC))


def _cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _csv_rows(events: Iterator[AuditEventView]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for event in events:
        detail = json.dumps(event.detail, sort_keys=True)
        writer.writerow(
            [
                event.id,
                event.at.isoformat(),
                *map(_cell, (event.actor, event.action)),
                _cell(event.target),
                _cell(detail),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _download(body: Iterator[str], mimetype: str, suffix: str) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="fleet-audit-{stamp}.{suffix}"'},
    )


@web.get("/audit.csv")
def audit_csv() -> Response:
    events = services().audit.export(_filter(request.args))
    return _download(_csv_rows(events), "text/csv", "csv")


@web.get("/audit.jsonl")
def audit_jsonl() -> Response:
    events = services().audit.export(_filter(request.args))
    lines = (json.dumps(e.as_json(), sort_keys=True) + "\n" for e in events)
    return _download(lines, "application/x-ndjson", "jsonl")
