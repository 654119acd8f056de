"""What the service layer hands to the edges: plain values, never ORM rows or secrets at rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleet.services.revocation import AccessEnd


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
    disable_at: datetime | None
    scope_map: str | None
    created_at: datetime
    passwords: tuple[PasswordView, ...]
    # Set once it was disabled or lost a password: when JWTs issued before stop working.
    access: AccessEnd | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    name: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SecretView:
    id: int
    kind: str  # secret or code
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    used_at: datetime | None
    used_by: str | None
    value: str | None = None  # present exactly once

    def __repr__(self) -> str:
        return f"SecretView(id={self.id}, kind={self.kind!r}, hint={self.hint!r})"


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """A group's settings as every view of a group starts: its fields come first, in order."""

    name: str
    scope_map: str | None
    password_lifetime_days: int
    rotation_window_days: int
    inactivity_limit_days: int | None
    require_approval: bool


@dataclass(frozen=True, slots=True)
class GroupView(GroupSettings):
    created_at: datetime
    devices: int
    secrets: tuple[SecretView, ...]  # the newest MAX_EMBEDDED_SECRETS, oldest first
    secrets_truncated: bool = False  # older ones exist: page them (GroupService.secrets)
    jwt_lifetime_seconds: int = 60  # of its device tokens' registry JWTs


@dataclass(frozen=True, slots=True)
class DeviceView:
    device_id: str
    group: str
    status: str
    token: str | None
    mqtt_username: str
    enrolled_at: datetime
    approved_at: datetime | None
    last_seen_at: datetime | None
    last_version: int
    acked_credentials_version: int
    active_slot: str | None
    pending_deliveries: int
    last_pull_at: datetime | None
    last_pull_ok: bool | None
    last_pull_detail: str | None
    active_expiry: datetime | None = None  # of the password in the slot the device uses
    allow_reenroll: bool = False
    access: AccessEnd | None = None  # of its token, once disabled (in a device's own view)


@dataclass(frozen=True, slots=True)
class DisableResult:
    """What disabling one device of a bulk request did: disabled, already disabled, or the
    reason it could not (the device was deleted meanwhile)."""

    device_id: str
    outcome: str
    detail: str = ""
    access: AccessEnd | None = None  # when its registry access ends, once disabled here


@dataclass(frozen=True, slots=True)
class GroupSummary(GroupSettings):
    """A row of the dashboard's table of groups: settings and device counts, no secrets."""

    devices: int
    pending: int
    jwt_lifetime_seconds: int = 60


@dataclass(frozen=True, slots=True)
class PendingDeviceView:
    device_id: str
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalQueue:
    """The first pending devices of a group (by id) and how many are pending in all."""

    devices: tuple[PendingDeviceView, ...]
    total: int


@dataclass(frozen=True, slots=True)
class RuleView:
    """A scope map's rule as its table shows it: a pattern and all its actions."""

    repository: str
    actions: tuple[str, ...]
    matches: bool  # whether it matches the repository asked about
    grants: bool  # whether it matches and holds the action asked about


@dataclass(frozen=True, slots=True)
class DenialView:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PasswordStateView:
    name: str  # password1 or password2
    expiry: datetime | None
    live: bool  # it signs in now


@dataclass(frozen=True, slots=True)
class AccessView:
    """The access explainer's answer for one token or scope map, repository and action."""

    repository: str
    action: str
    allowed: bool
    token: str | None  # None when a scope map was asked about on its own
    token_status: str | None
    disable_at: datetime | None
    passwords: tuple[PasswordStateView, ...]
    scope_map: str | None  # None for a token whose map was deleted
    scope_map_type: str | None
    granted: tuple[str, ...]  # every action the matching rules grant on the repository
    matched: tuple[RuleView, ...]  # the matching rules, broadest first
    rules: tuple[RuleView, ...]  # the map's whole table, by pattern, matching ones marked
    reasons: tuple[DenialView, ...]  # empty when allowed
