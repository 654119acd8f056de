"""Device tables: groups, enrollment secrets, devices and the delivery outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from fleet.db.types import optional_when_field, when_field

PENDING = "pending"
ACTIVE = "active"
DISABLED = "disabled"
DEVICE_STATUSES = (PENDING, ACTIVE, DISABLED)
# A new device's row while its enrollment is under way (fleet/services/enrollment.py): it
# holds the id for one request. Not a status a device has or a list filters by.
ENROLLING = "enrolling"

SECRET = "secret"  # reusable, revocable
CODE = "code"  # one device, once

DELIVERY_PENDING = "pending"
DELIVERY_ACKED = "acked"
DELIVERY_SUPERSEDED = "superseded"

DEVICE_ID_TYPE = String(64).with_variant(String(64, collation="C"), "postgresql")


def _fk(target: str, ondelete: str, *, nullable: bool) -> object:
    return Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
        ),
    )


class DeviceGroup(SQLModel, table=True):
    __tablename__ = "device_groups"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    scope_map_id: int | None = _fk("scope_maps.id", "SET NULL", nullable=True)  # type: ignore[assignment]
    password_lifetime_days: int = Field(default=30)
    rotation_window_days: int = Field(default=7)
    inactivity_limit_days: int | None = Field(default=None)
    require_approval: bool = Field(default=False)
    # How long the registry JWTs of the group's device tokens live, in seconds; and, while
    # JWTs issued under the one before may still be valid, that lifetime and when it changed.
    jwt_lifetime_s: int = Field(default=60)
    jwt_lifetime_before_s: int | None = Field(default=None)
    jwt_lifetime_changed_at: datetime | None = optional_when_field()
    created_at: datetime = when_field()
    updated_at: datetime = when_field()


class EnrollmentSecret(SQLModel, table=True):
    __tablename__ = "enrollment_secrets"
    # A group's secrets, oldest first, read page by page.
    __table_args__ = (Index("ix_enrollment_secrets_group_id_id", "group_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = _fk("device_groups.id", "CASCADE", nullable=False)  # type: ignore[assignment]
    kind: str = Field(max_length=8)
    secret_hash: str = Field(max_length=128, unique=True, index=True)
    hint: str = Field(max_length=16)
    created_at: datetime = when_field()
    expires_at: datetime | None = optional_when_field()
    revoked_at: datetime | None = optional_when_field()
    used_at: datetime | None = optional_when_field()
    used_by: str | None = Field(default=None, max_length=64)


class Device(SQLModel, table=True):
    __tablename__ = "devices"
    # The device list's filters (each ending with the device id it is paged by), then the
    # overview's counters: expiring credentials and silent devices among the active ones.
    __table_args__ = (
        Index("ix_devices_group_id_device_id", "group_id", "device_id"),
        Index("ix_devices_group_id_status_device_id", "group_id", "status", "device_id"),
        Index("ix_devices_status_device_id", "status", "device_id"),
        Index("ix_devices_status_expiry", "status", "active_expiry"),
        Index("ix_devices_status_group_last_seen", "status", "group_id", "last_seen_at"),
        # The device list's sorts, each paged over (time, device id).
        Index("ix_devices_last_seen_at_device_id", "last_seen_at", "device_id"),
        Index("ix_devices_active_expiry_device_id", "active_expiry", "device_id"),
        Index("ix_devices_enrolled_at_device_id", "enrolled_at", "device_id"),
        # A bulk job's pages: a group's devices by primary key (migration 0013).
        Index("ix_devices_group_id_id", "group_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Compared by code point on both databases (see migration 0008): prefixes are ranges.
    device_id: str = Field(
        sa_column=Column(DEVICE_ID_TYPE, nullable=False, unique=True, index=True)
    )
    group_id: int = _fk("device_groups.id", "RESTRICT", nullable=False)  # type: ignore[assignment]
    token_id: int | None = _fk("tokens.id", "SET NULL", nullable=True)  # type: ignore[assignment]
    status: str = Field(default=PENDING, max_length=16, index=True)
    x25519_public: str = Field(max_length=64)
    ed25519_public: str = Field(max_length=64)
    mqtt_username: str = Field(max_length=64)
    # FLEET_MQTT_AUTH=http: the keyed hash (fleet.credentials.SecretHasher) of the device's
    # MQTT password, which the broker's questions are answered from; never the password.
    mqtt_login_hash: str | None = Field(default=None, max_length=128)
    allow_reenroll: bool = Field(default=False)
    # The newest envelope version issued, and the newest credentials version acknowledged.
    last_version: int = Field(default=0)
    acked_credentials_version: int = Field(default=0)
    # The password slot the device uses now (after its last acknowledgement) and its expiry.
    active_slot: str | None = Field(default=None, max_length=16)
    active_expiry: datetime | None = optional_when_field()
    # Scheduler work, each indexed so a pass reads only what is due:
    # rotate when the newest issued password enters its rotation window,
    rotate_due_at: datetime | None = optional_when_field(index=True)
    # retire the previous slot after the new one was acknowledged (plus a grace period),
    retire_slot: str | None = Field(default=None, max_length=16)
    retire_due_at: datetime | None = optional_when_field(index=True)
    # warn when the password in use nears expiry with no acknowledged replacement.
    warn_due_at: datetime | None = optional_when_field(index=True)
    enrolled_at: datetime = when_field()
    approved_at: datetime | None = optional_when_field()
    last_seen_at: datetime | None = optional_when_field(index=True)
    last_pull_at: datetime | None = optional_when_field()
    last_pull_ok: bool | None = Field(default=None)
    last_pull_detail: str | None = Field(default=None, max_length=512)


class Delivery(SQLModel, table=True):
    """One sealed envelope for one device: the outbox the broker is fed from.

    The database, not the broker, is the record: a pending delivery is published again until
    the device acknowledges it. Sealed bytes are dropped once acknowledged or superseded.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("device_pk", "version"),
        Index("ix_deliveries_state_next_attempt", "state", "next_attempt_at"),
        # The overview's 7-day chart: rotations and acknowledgements per hour.
        Index("ix_deliveries_kind_created_at", "kind", "created_at"),
        Index("ix_deliveries_acked_at", "acked_at"),
        # The device list's "delivery pending" filter.
        Index("ix_deliveries_state_device_pk", "state", "device_pk"),
    )

    id: int | None = Field(default=None, primary_key=True)
    device_pk: int = _fk("devices.id", "CASCADE", nullable=False)  # type: ignore[assignment]
    version: int
    kind: str = Field(max_length=16)
    topic: str = Field(max_length=256)
    envelope: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # For credentials: which slot it fills, so an acknowledgement can move the device to it.
    slot: str | None = Field(default=None, max_length=16)
    state: str = Field(default=DELIVERY_PENDING, max_length=16)
    created_at: datetime = when_field()
    published_at: datetime | None = optional_when_field()
    acked_at: datetime | None = optional_when_field()
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = optional_when_field()
