"""Turn ``expiry`` / ``expirationInDays`` into one absolute time."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleet.api.schemas import Expiring
from fleet.domain.errors import ValidationError


def resolve_expiry(body: Expiring, now: datetime) -> datetime | None:
    if body.expiry is not None and body.expiration_in_days is not None:
        raise ValidationError("give expiry or expirationInDays, not both")
    if body.expiration_in_days is not None:
        return now + timedelta(days=body.expiration_in_days)
    return body.expiry
