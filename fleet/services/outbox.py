"""The expiry-warning webhook's outbox: events written with their audit row, sent off the pass.

The reconciler only writes a row (``enqueue``) in the transaction that records the warning, so
a warning is never lost and never queued twice for one pass, and a dead endpoint costs the pass
nothing. ``WebhookSender`` runs on its own scheduler job: it claims due rows with one
conditional UPDATE and a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), posts each with a
short timeout, and on failure backs off exponentially with jitter until a bounded number of
tries or age, when it gives up (logged and audited). Two servers never hold one row at once.

Delivery is at least once (a server that dies after the POST and before recording it sends
again after the lease): every body carries ``eventId``, sent also as ``X-Fleet-Event-Id`` and
``Idempotency-Key``, for receivers to drop repeats.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from fleet.db.models import WebhookOutbox
from fleet.services.context import ServiceContext, audit

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 10  # the wait after the first failed try; it doubles after each one
BACKOFF_CAP_S = 3600
BATCH = 50  # events claimed at once by one sender
MAX_BATCHES = 20  # per run: the job ends, and the next interval goes on
LEASE_MARGIN_S = 30
MAX_ERROR = 512  # the column's size
ACTOR = "scheduler"
TARGET = "warning-webhook"
GAVE_UP = "webhook.gave_up"
DROPPED = "webhook.dropped"

# (url, body, headers, timeout in seconds); raises on anything but a 2xx answer.
Post = Callable[[str, bytes, Mapping[str, str], float], None]


class WebhookRefused(Exception):
    """The endpoint answered, but not with a 2xx."""


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    # No redirects: a 3xx is a failure to be retried, never a new destination for the event.
    response = requests.post(
        url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False
    )
    if not 200 <= response.status_code < 300:
        raise WebhookRefused(f"HTTP {response.status_code} {response.reason or ''}".strip())


def enqueue(session: Session, ctx: ServiceContext, event: Mapping[str, Any]) -> str | None:
    """Queue ``event`` in the caller's transaction; its event id, or None with no webhook."""
    if not ctx.settings.warning_webhook_url:
        return None
    now = ctx.clock()
    event_id = str(uuid.uuid4())
    body = json.dumps({"eventId": event_id, **event}, sort_keys=True, default=str)
    session.add(WebhookOutbox(event_id=event_id, body=body, created_at=now, next_attempt_at=now))
    return event_id


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after ``attempts`` failed tries: 10 s doubling to 1 h, drawn from its upper
    half so senders that failed together do not retry together."""
    full = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(max(attempts, 1) - 1, 16))
    return timedelta(seconds=rng.uniform(full / 2, full))


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    oldest_pending_seconds: float | None
    given_up: int
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True)
class _Claimed:
    pk: int
    event_id: str
    body: str
    attempts: int
    created_at: datetime


def _pending() -> Any:
    return col(WebhookOutbox.next_attempt_at).is_not(None)


def _unclaimed(now: datetime) -> Any:
    return or_(col(WebhookOutbox.claimed_until).is_(None), col(WebhookOutbox.claimed_until) < now)


class WebhookSender:
    def __init__(
        self, ctx: ServiceContext, post: Post = http_post, rng: random.Random | None = None
    ) -> None:
        self.ctx = ctx
        self.post = post
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)

    @property
    def _lease(self) -> timedelta:
        # Long enough for a whole batch of timeouts: a live sender never loses its claim.
        return timedelta(seconds=self.ctx.settings.webhook_timeout_seconds * BATCH + LEASE_MARGIN_S)

    def run(self, stop: threading.Event | None = None) -> int:
        """Prune, then send due events batch after batch; how many were sent."""
        self.prune()
        sent = 0
        for _ in range(MAX_BATCHES):
            if stop is not None and stop.is_set():
                break
            done, claimed = self.send_due(stop)
            sent += done
            if claimed < BATCH:
                break
        return sent

    # -- sending ---------------------------------------------------------------------------
    def send_due(self, stop: threading.Event | None = None) -> tuple[int, int]:
        """One batch: (events sent, events claimed)."""
        url = self.ctx.settings.warning_webhook_url
        if not url:
            return 0, 0
        token, rows = self._claim()
        sent = 0
        for row in rows:
            if stop is not None and stop.is_set():
                self._release(token, row)
                continue
            headers = {
                "Content-Type": "application/json",
                "X-Fleet-Event-Id": row.event_id,
                "Idempotency-Key": row.event_id,
            }
            try:
                self.post(
                    url, row.body.encode(), headers, self.ctx.settings.webhook_timeout_seconds
                )
            except Exception as exc:  # any failure of one event is that event's, never the job's
                self._failed(token, row, f"{exc.__class__.__name__}: {exc}")
                continue
            self._sent(token, row)
            sent += 1
        return sent, len(rows)

    def _claim(self) -> tuple[str, list[_Claimed]]:
        """Due rows nobody holds, made ours by one statement (SQLite serialises writers; on
        PostgreSQL the rows another sender is claiming are skipped, and the outer conditions
        are checked again on each row before it is written)."""
        now = self.ctx.clock()
        token = str(uuid.uuid4())
        with self.ctx.db.session() as s:
            due = (
                select(WebhookOutbox.id)
                .where(col(WebhookOutbox.next_attempt_at) <= now, _unclaimed(now))
                .order_by(col(WebhookOutbox.next_attempt_at), col(WebhookOutbox.id))
                .limit(BATCH)
            )
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            s.exec(
                update(WebhookOutbox)
                .where(
                    col(WebhookOutbox.id).in_(due.scalar_subquery()), _pending(), _unclaimed(now)
                )
                .values(claim_token=token, claimed_until=now + self._lease)
            )
        with self.ctx.db.session() as s:
            rows = s.exec(
                select(WebhookOutbox)
                .where(WebhookOutbox.claim_token == token)
                .order_by(col(WebhookOutbox.next_attempt_at), col(WebhookOutbox.id))
            ).all()
            return token, [
                _Claimed(r.id or 0, r.event_id, r.body, r.attempts, r.created_at) for r in rows
            ]

    def _mine(self, token: str, row: _Claimed) -> Any:
        return update(WebhookOutbox).where(
            col(WebhookOutbox.id) == row.pk, col(WebhookOutbox.claim_token) == token
        )

    def _sent(self, token: str, row: _Claimed) -> None:
        now = self.ctx.clock()
        with self.ctx.db.session() as s:
            s.exec(
                self._mine(token, row).values(
                    attempts=row.attempts + 1,
                    last_attempt_at=now,
                    sent_at=now,
                    next_attempt_at=None,
                    claim_token=None,
                    claimed_until=None,
                )
            )

    def _release(self, token: str, row: _Claimed) -> None:
        with self.ctx.db.session() as s:
            s.exec(self._mine(token, row).values(claim_token=None, claimed_until=None))

    def _failed(self, token: str, row: _Claimed, error: str) -> None:
        settings = self.ctx.settings
        now = self.ctx.clock()
        attempts = row.attempts + 1
        too_old = now - row.created_at >= timedelta(hours=settings.webhook_max_age_hours)
        give_up = attempts >= settings.webhook_max_attempts or too_old
        error = error[:MAX_ERROR]
        with self.ctx.db.session() as s:
            result = s.exec(
                self._mine(token, row).values(
                    attempts=attempts,
                    last_attempt_at=now,
                    last_error=error,
                    next_attempt_at=None if give_up else now + backoff(attempts, self.rng),
                    gave_up_at=now if give_up else None,
                    claim_token=None,
                    claimed_until=None,
                )
            )
            if not give_up or not result.rowcount:  # type: ignore[attr-defined]
                log.info(
                    "warning webhook event %s failed (try %d): %s", row.event_id, attempts, error
                )
                return
            audit(
                s,
                self.ctx,
                ACTOR,
                GAVE_UP,
                TARGET,
                eventId=row.event_id,
                attempts=attempts,
                error=error,
            )
        log.warning(
            "warning webhook event %s given up after %d tries (%s): %s",
            row.event_id,
            attempts,
            "too old" if too_old else "too many tries",
            error,
        )

    # -- bounds ----------------------------------------------------------------------------
    def prune(self) -> None:
        """Delete sent and given-up rows after their retention, give up pending ones past the
        age bound, and drop the oldest pending ones beyond the row bound; logged and audited."""
        settings = self.ctx.settings
        now = self.ctx.clock()
        kept = now - timedelta(hours=settings.webhook_sent_retention_hours)
        with self.ctx.db.session() as s:
            s.exec(
                delete(WebhookOutbox).where(
                    or_(col(WebhookOutbox.sent_at) < kept, col(WebhookOutbox.gave_up_at) < kept)
                )
            )
            old = now - timedelta(hours=settings.webhook_max_age_hours)
            aged = s.exec(
                update(WebhookOutbox)
                .where(_pending(), col(WebhookOutbox.created_at) < old, _unclaimed(now))
                .values(next_attempt_at=None, gave_up_at=now)
            ).rowcount  # type: ignore[attr-defined]
            beyond = (
                select(WebhookOutbox.id)
                .where(_pending())
                .order_by(col(WebhookOutbox.created_at).desc(), col(WebhookOutbox.id).desc())
                .offset(settings.webhook_outbox_max_rows)
            )
            full = s.exec(
                delete(WebhookOutbox).where(col(WebhookOutbox.id).in_(beyond.scalar_subquery()))
            ).rowcount  # type: ignore[attr-defined]
            if aged:
                why = f"older than {settings.webhook_max_age_hours} h"
                log.warning("gave up %d unsent warning webhook events %s", aged, why)
                audit(s, self.ctx, ACTOR, GAVE_UP, TARGET, count=aged, reason=why)
            if full:
                why = f"beyond {settings.webhook_outbox_max_rows} waiting events"
                log.warning("dropped the %d oldest unsent warning webhook events: %s", full, why)
                audit(s, self.ctx, ACTOR, DROPPED, TARGET, count=full, reason=why)

    def status(self) -> OutboxStatus:
        now = self.ctx.clock()
        with self.ctx.db.session() as s:
            pending, oldest = s.exec(
                select(func.count(), func.min(WebhookOutbox.created_at)).where(_pending())
            ).one()
            given_up = s.exec(
                select(func.count()).where(col(WebhookOutbox.gave_up_at).is_not(None))
            ).one()
            last = s.exec(
                select(WebhookOutbox.last_error, WebhookOutbox.last_attempt_at)
                .where(col(WebhookOutbox.last_error).is_not(None))
                .order_by(col(WebhookOutbox.last_attempt_at).desc())
                .limit(1)
            ).first()
        if oldest is not None and oldest.tzinfo is None:  # func.min skips the column's type
            oldest = oldest.replace(tzinfo=now.tzinfo)
        return OutboxStatus(
            pending=int(pending),
            oldest_pending_seconds=(now - oldest).total_seconds() if oldest else None,
            given_up=int(given_up),
            last_error=last[0] if last else None,
            last_error_at=last[1] if last else None,
        )
