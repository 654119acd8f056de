"""Service views -> the reference's JSON shapes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleet.services.health import TokenHealthView
from fleet.services.revocation import AccessEnd
from fleet.services.views import AccessView, PasswordView, ScopeMapView, TokenView

PROVISIONED = "Succeeded"


def resource_id(registry: str, kind: str, name: str) -> str:
    return f"/registries/{registry}/{kind}/{name}"


def password_json(p: PasswordView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "creationTime": p.created_at.isoformat(),
        "expiry": p.expiry.isoformat() if p.expiry else None,
        "name": p.name,
    }
    if p.value is not None:
        out["value"] = p.value
    return out


def credentials_json(username: str, passwords: Sequence[PasswordView]) -> dict[str, Any]:
    return {"passwords": [password_json(p) for p in passwords], "username": username}


def access_end_json(access: AccessEnd | None) -> dict[str, Any]:
    """When JWTs issued before a disable, delete or password removal stop working; null
    until one of those happened."""
    return {
        "registryAccessEndsBy": access.ends_by.isoformat() if access else None,
        "registryAccessEnded": access.ended if access else None,
    }


def token_json(registry: str, t: TokenView) -> dict[str, Any]:
    return {
        **access_end_json(t.access),
        "creationDate": t.created_at.isoformat(),
        "credentials": {"certificates": [], **credentials_json(t.name, t.passwords)},
        "disableAt": t.disable_at.isoformat() if t.disable_at else None,
        "id": resource_id(registry, "tokens", t.name),
        "name": t.name,
        "objectId": None,
        "provisioningState": PROVISIONED,
        "registry": registry,
        "scopeMapId": resource_id(registry, "scopeMaps", t.scope_map) if t.scope_map else None,
        "status": t.status,
        "type": "fleet/registries/tokens",
    }


def scope_map_json(registry: str, m: ScopeMapView) -> dict[str, Any]:
    return {
        "actions": [f"repositories/{repo}/{action}" for repo, action in m.entries],
        "creationDate": m.created_at.isoformat(),
        "description": m.description,
        "id": resource_id(registry, "scopeMaps", m.name),
        "name": m.name,
        "provisioningState": PROVISIONED,
        "registry": registry,
        "scopeMapType": m.type,
        "type": "fleet/registries/scopeMaps",
    }


def health_json(h: TokenHealthView) -> dict[str, Any]:
    def seen(at: datetime | None, address: str | None) -> dict[str, Any] | None:
        return {"at": at.isoformat(), "address": address or ""} if at else None

    return {
        "lastUsed": seen(h.last_used_at, h.last_used_address),
        "failedLogins": h.failed_logins,
        "lastFailed": seen(h.last_failed_at, h.last_failed_address),
    }


def access_json(v: AccessView) -> dict[str, Any]:
    token = None
    if v.token is not None:
        token = {
            "name": v.token,
            "status": v.token_status,
            "disableAt": v.disable_at.isoformat() if v.disable_at else None,
            "passwords": [
                {
                    "name": p.name,
                    "expiry": p.expiry.isoformat() if p.expiry else None,
                    "live": p.live,
                }
                for p in v.passwords
            ],
        }
    return {
        "repository": v.repository,
        "action": v.action,
        "decision": "allowed" if v.allowed else "denied",
        "allowed": v.allowed,
        "token": token,
        "scopeMap": {"name": v.scope_map, "type": v.scope_map_type} if v.scope_map else None,
        "grantedActions": list(v.granted),
        "matchedRules": [
            {"repository": r.repository, "actions": list(r.actions), "grantsAction": r.grants}
            for r in v.matched
        ],
        "reasons": [{"code": r.code, "message": r.message} for r in v.reasons],
    }
