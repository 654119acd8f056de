"""What the service layer hands to the edges: plain values, never ORM rows or secrets at rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ScopeMapView:
    name: str
    type: str
    description: str
    created_at: datetime
    # (repository pattern, action) entries, in a stable order.
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PasswordView:
    name: str  # password1 or password2
    created_at: datetime
    expiry: datetime | None
    # Present exactly once: in the answer to the call that generated it.
    value: str | None = None

    def __repr__(self) -> str:
        hidden = "None" if self.value is None else "'***'"
        return f"PasswordView(name={self.name!r}, expiry={self.expiry!r}, value={hidden})"


@dataclass(frozen=True, slots=True)
class TokenView:
    name: str
    status: str
    scope_map: str | None
    created_at: datetime
    passwords: tuple[PasswordView, ...]


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    name: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None
