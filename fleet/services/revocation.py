"""When a revoked credential's registry access really ends.

Disabling a token (or its device), deleting it or removing one of its passwords stops the
token endpoint at once, but a registry JWT issued a moment before stays valid: the registry
checks only its signature and ``exp``, with :data:`REGISTRY_LEEWAY` of clock skew. The last
JWT issued under the credential expires at most its lifetime after the change, so access ends
by::

    floor(change + SETTLE_S) + lifetime + REGISTRY_LEEWAY

``exp`` is a whole second (the issue time, truncated, plus the lifetime) and Distribution
refuses a token once the time is past ``exp`` plus the leeway. ``SETTLE_S`` covers a request
that proved the password just before the change committed and signs its JWT just after.

The server does not write down every JWT it issues (that would cost a database write per
pull on the token endpoint), so the bound counts a JWT issued at the last moment: it is when
access has surely ended, not when the credential was last used.

The lifetime is a device group's, or the ``token_lifetime`` setting for other tokens; after a
group's lifetime is shortened, JWTs issued under the longer one are still counted until they
have expired (the group keeps the previous lifetime and when it changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from fleet.db.devices import Device, DeviceGroup
from fleet.db.models import ENABLED, Token
from fleet.registry_auth.tokens import REGISTRY_LEEWAY
from fleet.services.context import ServiceContext

SETTLE_S = 1.0


@dataclass(frozen=True, slots=True)
class AccessEnd:
    """When the registry last accepts a JWT issued before a revocation, and whether that
    time has passed (as of the answer)."""

    ends_by: datetime
    ended: bool


def access_end(ends_by: datetime | None, now: datetime) -> AccessEnd | None:
    if ends_by is None:
        return None
    return AccessEnd(ends_by=ends_by, ended=now >= ends_by)


def ends_detail(ends_by: datetime | None) -> dict[str, object]:
    """The audit event's detail: when access ends, if known."""
    return {} if ends_by is None else {"access_ends_by": ends_by}


def expiry_of_last_jwt(issued_by: datetime, lifetime: int) -> datetime:
    """When the registry refuses a JWT issued no later than ``issued_by``."""
    last_second = math.floor(issued_by.timestamp() + SETTLE_S)
    return datetime.fromtimestamp(last_second + lifetime + REGISTRY_LEEWAY, UTC)


def group_ends_by(group: DeviceGroup, now: datetime) -> datetime:
    """When access ends for a device of ``group`` revoked ``now``."""
    end = expiry_of_last_jwt(now, group.jwt_lifetime_s)
    if group.jwt_lifetime_before_s is not None and group.jwt_lifetime_changed_at is not None:
        end = max(
            end, expiry_of_last_jwt(group.jwt_lifetime_changed_at, group.jwt_lifetime_before_s)
        )
    return end


def revoke(s: Session, ctx: ServiceContext, token: Token) -> datetime | None:
    """Record on ``token``, before it is disabled or loses a password, when its last JWT
    expires; return that time. A disabled token issues none, so its time stays as it was."""
    if token.status != ENABLED:
        return token.access_ends_at
    now = ctx.clock()
    group = s.exec(
        select(DeviceGroup)
        .join(Device, Device.group_id == DeviceGroup.id)  # type: ignore[arg-type]
        .where(Device.token_id == token.id)
    ).first()
    if group is None:
        end = expiry_of_last_jwt(now, ctx.settings.token_lifetime)
    else:
        end = group_ends_by(group, now)
    if token.access_ends_at is not None:
        end = max(end, token.access_ends_at)
    token.access_ends_at = end
    s.add(token)
    return end


def changed_lifetime(group: DeviceGroup, lifetime: int, now: datetime) -> None:
    """Give ``group`` a new JWT lifetime, keeping what JWTs issued until ``now`` can live."""
    if lifetime == group.jwt_lifetime_s:
        return
    end = group_ends_by(group, now)
    group.jwt_lifetime_before_s = (
        round(end.timestamp()) - math.floor(now.timestamp() + SETTLE_S) - REGISTRY_LEEWAY
    )
    group.jwt_lifetime_changed_at = now
    group.jwt_lifetime_s = lifetime
