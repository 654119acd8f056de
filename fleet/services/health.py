"""Credential health: when and from where each token last logged in, and who keeps failing.

The token endpoint is the hottest path there is, so nothing here writes per request. Each
process keeps what it saw in memory (a dictionary update under a lock) and a background thread
writes it every few seconds in one transaction of Core statements:

- ``token_health``: per token, its last successful login (time, address) and its failed
  logins (a count, the last time and address). Only names of tokens that exist get a row.
- ``login_failures_hourly``: failed logins per hour, per token name and per client address,
  for the overview's "failed logins in 24 h" and its 7-day chart; pruned after 8 days.

What a process holds between two writes is bounded (``max_keys`` names and addresses each;
past that, further keys of that interval are counted under ``OVERFLOW_KEY``). A process that
dies loses at most one interval of health data, never a credential.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, case, desc, func, select
from sqlalchemy.dialects import postgresql, sqlite

from fleet.db.models import LoginFailureHourly, Token, TokenHealth
from fleet.services.context import ServiceContext

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 5.0
MAX_KEYS = 10_000  # names and addresses each, per process per interval
OVERFLOW_KEY = "(more)"
RETENTION = timedelta(days=8)
PRUNE_EVERY_S = 3600.0
KIND_TOKEN = "token"
KIND_ADDRESS = "address"
MAX_KEY_CHARS = 128


@dataclass(slots=True)
class _Seen:
    ok_at: float = 0.0
    ok_address: str = ""
    failed: int = 0
    failed_at: float = 0.0
    failed_address: str = ""


@dataclass(frozen=True, slots=True)
class TokenHealthView:
    last_used_at: datetime | None
    last_used_address: str | None
    failed_logins: int
    last_failed_at: datetime | None
    last_failed_address: str | None


NO_HEALTH = TokenHealthView(None, None, 0, None, None)


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _hour(stamp: float) -> datetime:
    return _utc(stamp - stamp % 3600)


class HealthRecorder:
    def __init__(
        self,
        ctx: ServiceContext,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_keys: int = MAX_KEYS,
        clock: Any = time.time,
    ) -> None:
        self.ctx = ctx
        self._interval = flush_interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Seen] = {}
        self._failures: dict[tuple[str, str, datetime], int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pruned_at = 0.0
        self._pid = 0

    # --- the hot path: called by the token endpoint ------------------------------------

    def login_ok(self, token: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            seen = self._seen(token)
            seen.ok_at, seen.ok_address = now, address[:64]
        self._ensure_thread()

    def login_failed(self, name: str, address: str) -> None:
        now = self._clock()
        hour = _hour(now)
        with self._lock:
            seen = self._seen(name)
            seen.failed += 1
            seen.failed_at, seen.failed_address = now, address[:64]
            for kind, key in ((KIND_TOKEN, name), (KIND_ADDRESS, address)):
                slot = (kind, key[:MAX_KEY_CHARS], hour)
                if slot not in self._failures and len(self._failures) >= 2 * self._max_keys:
                    slot = (kind, OVERFLOW_KEY, hour)
                self._failures[slot] = self._failures.get(slot, 0) + 1
        self._ensure_thread()

    def _seen(self, name: str) -> _Seen:
        seen = self._tokens.get(name)
        if seen is None:
            if len(self._tokens) >= self._max_keys:
                name = OVERFLOW_KEY
                seen = self._tokens.get(name)
            if seen is None:
                seen = self._tokens[name] = _Seen()
        return seen

    def held(self) -> tuple[int, int]:
        """What waits in memory for the next flush: (tokens seen, failure counters). Bounded
        by ``max_keys`` (plus one overflow entry) and twice that (plus one per kind)."""
        with self._lock:
            return len(self._tokens), len(self._failures)

    # --- writing ------------------------------------------------------------------------

    def flush(self) -> int:
        """Write what this process saw since the last flush; returns how many rows it wrote."""
        with self._lock:
            tokens, self._tokens = self._tokens, {}
            failures, self._failures = self._failures, {}
        if not tokens and not failures:
            self._maybe_prune()
            return 0
        written = 0
        with self.ctx.db.engine.begin() as conn:
            names = [n for n in tokens if n != OVERFLOW_KEY]
            known = select(_table(Token).c.name).where(_table(Token).c.name.in_(names))
            existing = set(conn.execute(known).scalars()) if names else set()
            rows = [_health_row(name, tokens[name]) for name in sorted(existing)]
            if rows:
                conn.execute(_health_upsert(conn.dialect.name), rows)
                written += len(rows)
            if failures:
                hourly = [
                    {"hour": hour, "kind": kind, "key": key, "count": count}
                    for (kind, key, hour), count in sorted(failures.items())
                ]
                conn.execute(_failures_upsert(conn.dialect.name), hourly)
                written += len(hourly)
        self._maybe_prune()
        return written

    def _maybe_prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        table = _table(LoginFailureHourly)
        with self.ctx.db.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.hour < _utc(now) - RETENTION))

    # --- reading ------------------------------------------------------------------------

    def for_token(self, name: str) -> TokenHealthView:
        """What the database holds for ``name`` (at most one flush interval behind)."""
        table = _table(TokenHealth)
        with self.ctx.db.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.token_name == name)).first()
        if row is None:
            return NO_HEALTH
        return TokenHealthView(
            last_used_at=row.last_used_at,
            last_used_address=row.last_used_address,
            failed_logins=row.failed_logins,
            last_failed_at=row.last_failed_at,
            last_failed_address=row.last_failed_address,
        )

    # --- the background writer -----------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()  # a forked worker starts its own writer
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="fleet-health-writer", daemon=True
            )
            self._thread.start()
            atexit.register(self.stop)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a lost batch of health data must never stop the writer
            log.exception("writing credential health data failed; this batch is dropped")

    def stop(self) -> None:
        """Stop the writer and write what is left (at exit, and when services close)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout=self._interval + 5)
        self._flush_logged()


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _health_row(name: str, seen: _Seen) -> dict[str, Any]:
    return {
        "token_name": name,
        "last_used_at": _utc(seen.ok_at) if seen.ok_at else None,
        "last_used_address": seen.ok_address or None,
        "failed_logins": seen.failed,
        "last_failed_at": _utc(seen.failed_at) if seen.failed_at else None,
        "last_failed_address": seen.failed_address or None,
    }


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _health_upsert(dialect: str) -> Any:
    """Insert a token's health, or fold it into the row it has: newest times win, counts add."""
    table = _table(TokenHealth)
    stmt = _insert(dialect, table)
    new, old = stmt.excluded, table.c
    return stmt.on_conflict_do_update(
        index_elements=[old.token_name],
        set_={
            "last_used_at": _coalesce_latest(new.last_used_at, old.last_used_at),
            "last_used_address": _when_newer(
                new.last_used_at, old.last_used_at, new.last_used_address, old.last_used_address
            ),
            "failed_logins": old.failed_logins + new.failed_logins,
            "last_failed_at": _coalesce_latest(new.last_failed_at, old.last_failed_at),
            "last_failed_address": _when_newer(
                new.last_failed_at,
                old.last_failed_at,
                new.last_failed_address,
                old.last_failed_address,
            ),
        },
    )


def _coalesce_latest(new: Any, old: Any) -> Any:
    return case((new.is_(None), old), (old.is_(None), new), (new > old, new), else_=old)


def _when_newer(new_at: Any, old_at: Any, new_value: Any, old_value: Any) -> Any:
    return case(
        (new_at.is_(None), old_value),
        (old_at.is_(None), new_value),
        (new_at >= old_at, new_value),
        else_=old_value,
    )


def _failures_upsert(dialect: str) -> Any:
    table = _table(LoginFailureHourly)
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.hour, table.c.kind, table.c.key],
        set_={"count": table.c.count + stmt.excluded.count},
    )


def top_failures(
    ctx: ServiceContext, kind: str, since: datetime, limit: int = 10
) -> list[tuple[str, int]]:
    """The keys (token names or addresses) with the most failed logins since ``since``."""
    table = _table(LoginFailureHourly)
    total = func.sum(table.c.count).label("total")
    query = (
        select(table.c.key, total)
        .where(table.c.kind == kind, table.c.hour >= _hour(since.timestamp()))
        .group_by(table.c.key)
        .order_by(desc(total), table.c.key)
        .limit(limit)
    )
    with ctx.db.engine.connect() as conn:
        return [(key, int(count)) for key, count in conn.execute(query)]
