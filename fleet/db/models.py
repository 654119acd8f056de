"""The tables. Secrets appear here only as keyed hashes, never as values."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from fleet.db.types import optional_when_field, when_field

USER_DEFINED = "UserDefined"
SYSTEM_DEFINED = "SystemDefined"
ENABLED = "enabled"
DISABLED = "disabled"
SLOTS = ("password1", "password2")


class ScopeMapBase(SQLModel):
    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", max_length=1024)


class ScopeMap(ScopeMapBase, table=True):
    __tablename__ = "scope_maps"
    # The list's order (system-defined first, then by name), read page by page.
    __table_args__ = (Index("ix_scope_maps_type_name", "type", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(default=USER_DEFINED, max_length=16)
    # Grows on every change of the map's entries: caches of compiled maps key on it.
    revision: int = Field(default=1)
    created_at: datetime = when_field()
    updated_at: datetime = when_field()


class ScopeMapEntry(SQLModel, table=True):
    """One repository-action entry: the unit the per-map limit counts."""

    __tablename__ = "scope_map_entries"
    __table_args__ = (UniqueConstraint("scope_map_id", "repository", "action"),)

    id: int | None = Field(default=None, primary_key=True)
    scope_map_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("scope_maps.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    repository: str = Field(max_length=260)
    action: str = Field(max_length=32)


class TokenBase(SQLModel):
    name: str = Field(max_length=64, unique=True, index=True)
    status: str = Field(default=ENABLED, max_length=16)


class Token(TokenBase, table=True):
    __tablename__ = "tokens"
    # A scope map's tokens, by name, read page by page.
    __table_args__ = (Index("ix_tokens_scope_map_id_name", "scope_map_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    scope_map_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("scope_maps.id", ondelete="SET NULL"), nullable=True, index=True
        ),
    )
    created_at: datetime = when_field()
    updated_at: datetime = when_field()
    # A planned disable, carried out by the scheduler.
    disable_at: datetime | None = optional_when_field(index=True)
    # When the registry last accepts a JWT issued before the token was disabled or one of
    # its passwords removed (fleet.services.revocation); cleared when it is enabled again.
    access_ends_at: datetime | None = optional_when_field()


class TokenPassword(SQLModel, table=True):
    __tablename__ = "token_passwords"
    __table_args__ = (UniqueConstraint("token_id", "slot"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("tokens.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    slot: str = Field(max_length=16)
    secret_hash: str = Field(max_length=128)
    created_at: datetime = when_field()
    expiry: datetime | None = optional_when_field()


class ApiKey(SQLModel, table=True):
    """An operator's bearer key for the REST API, kept as a keyed hash."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True)
    key_hash: str = Field(max_length=128, unique=True, index=True)
    hint: str = Field(max_length=16)
    created_at: datetime = when_field()
    revoked_at: datetime | None = optional_when_field()


class Operator(SQLModel, table=True):
    """A person who signs in to the dashboard: a role and a slow (argon2id) password hash.

    ``session_epoch`` grows whenever the password is reset, so every session signed in before
    the reset ends at its next request.
    """

    __tablename__ = "operators"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=256)
    session_epoch: int = Field(default=0)
    created_at: datetime = when_field()
    password_changed_at: datetime = when_field()
    last_sign_in_at: datetime | None = optional_when_field()


class TokenHealth(SQLModel, table=True):
    """A token's last successful registry login and its failed ones, written in batches."""

    __tablename__ = "token_health"

    token_name: str = Field(max_length=64, primary_key=True)
    last_used_at: datetime | None = optional_when_field()
    last_used_address: str | None = Field(default=None, max_length=64)
    failed_logins: int = Field(default=0)
    last_failed_at: datetime | None = optional_when_field()
    last_failed_address: str | None = Field(default=None, max_length=64)


class LoginFailureHourly(SQLModel, table=True):
    """Failed registry logins per hour, per token name (``kind='token'``) or client address."""

    __tablename__ = "login_failures_hourly"

    hour: datetime = when_field(primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)
    key: str = Field(max_length=128, primary_key=True)
    count: int = Field(default=0)


class ActivityHourly(SQLModel, table=True):
    """Rotations, acknowledged deliveries and failed logins of an hour that has ended.

    Written by the overview the first time it needs an ended hour (counted once from the
    deliveries and ``login_failures_hourly``, by index), never on the delivery or login path;
    the current hour is counted live.
    """

    __tablename__ = "activity_hourly"

    hour: datetime = when_field(primary_key=True)
    rotations: int = Field(default=0)
    acked: int = Field(default=0)
    failed_logins: int = Field(default=0)


class AuditEvent(SQLModel, table=True):
    """Who did what, when. Never a secret."""

    __tablename__ = "audit_events"
    # A device's (or any target's) timeline, newest first.
    __table_args__ = (Index("ix_audit_events_target_id", "target", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = when_field(index=True)
    actor: str = Field(max_length=128, index=True)
    action: str = Field(max_length=64, index=True)
    target: str = Field(max_length=256, index=True)
    detail: str = Field(default="{}", max_length=4096)


class SchedulerRun(SQLModel, table=True):
    """One reconciler pass: when, where, and what it did."""

    __tablename__ = "scheduler_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = when_field(index=True)
    finished_at: datetime | None = optional_when_field()
    node: str = Field(max_length=128)
    summary: str = Field(default="{}", max_length=4096)
    error: str | None = Field(default=None, max_length=1024)


class WebhookOutbox(SQLModel, table=True):
    """One event for the warning webhook, written with the audit row that records it.

    A row is pending while ``next_attempt_at`` is set; a sender claims it by writing its own
    ``claim_token`` and a lease (``claimed_until``), so two servers never send it at once.
    Sent and given-up rows keep their time and are pruned after a while.
    """

    __tablename__ = "webhook_outbox"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36, unique=True, index=True)
    body: str = Field(max_length=4096)
    created_at: datetime = when_field(index=True)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = optional_when_field(index=True)
    claim_token: str | None = Field(default=None, max_length=36)
    claimed_until: datetime | None = optional_when_field()
    last_attempt_at: datetime | None = optional_when_field()
    last_error: str | None = Field(default=None, max_length=512)
    sent_at: datetime | None = optional_when_field(index=True)
    gave_up_at: datetime | None = optional_when_field(index=True)


class SharedKey(SQLModel, table=True):
    """A key every server of the deployment signs with (the JWT key ring, the envelope key).

    ``sealed`` is AES-GCM under a key derived from the secret key, with ``name`` as associated
    data (fleet/services/shared_keys.py): never the key itself. Empty while not yet made.
    ``version`` grows on every write: a server rereads the row only when it moved.
    """

    __tablename__ = "shared_keys"

    name: str = Field(primary_key=True, max_length=64)
    version: int = Field(default=0)
    sealed: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = when_field()
