"""What every service needs: the database, settings, the secret hasher and a clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from fleet.config import Settings
from fleet.credentials import SecretHasher
from fleet.db.engine import Database
from fleet.db.models import AuditEvent
from fleet.db.types import utcnow

Clock = Callable[[], datetime]
MAX_DETAIL = 4096  # the column's size
MAX_LISTED = 50


@dataclass
class ServiceContext:
    db: Database
    settings: Settings
    hasher: SecretHasher
    clock: Clock = field(default=utcnow)


def audit(
    session: Session, ctx: ServiceContext, actor: str, action: str, target: str, **detail: object
) -> None:
    """Record an audit event in the caller's transaction. Callers never pass secrets.

    A detail too long for its column (a 500-entry scope map) keeps its first items and says
    how many it left out, so the event is still written on every database.
    """
    text = json.dumps(detail, default=str, sort_keys=True)
    if len(text) > MAX_DETAIL:
        shortened = {
            key: ([*value[:MAX_LISTED], f"... {len(value) - MAX_LISTED} more"])
            if isinstance(value, list) and len(value) > MAX_LISTED
            else value
            for key, value in detail.items()
        }
        text = json.dumps(shortened, default=str, sort_keys=True)[:MAX_DETAIL]
    session.add(
        AuditEvent(
            at=ctx.clock(),
            actor=actor[:128],
            action=action,
            target=target[:256],
            detail=text,
        )
    )
