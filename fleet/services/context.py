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


@dataclass
class ServiceContext:
    db: Database
    settings: Settings
    hasher: SecretHasher
    clock: Clock = field(default=utcnow)


def audit(
    session: Session, ctx: ServiceContext, actor: str, action: str, target: str, **detail: object
) -> None:
    """Record an audit event in the caller's transaction. Callers never pass secrets."""
    session.add(
        AuditEvent(
            at=ctx.clock(),
            actor=actor[:128],
            action=action,
            target=target[:256],
            detail=json.dumps(detail, default=str, sort_keys=True),
        )
    )
