"""the device list: ids in code-point order, and indexes for its sorts and filters

The dashboard searches devices by id prefix as the range ``q <= device_id < successor(q)``.
Under a linguistic collation (``en_US.UTF-8``) that range is not the ids starting with
``q`` (hyphens are ignored at first) and ``LIKE 'q%'`` cannot use the btree; so on
PostgreSQL the device id is compared ``COLLATE "C"``, by code point, as SQLite compares it.
Device ids are ASCII letters, digits and hyphens, and every index holding the column is
rebuilt in that order by the same statement.

The list sorts by last seen, credential expiry and enrollment time, each paged over
``(time, device_id)``; "delivery pending" reads the pending deliveries' devices from
``(state, device_pk)``; a device's timeline reads its audit events newest first from
``(target, id)``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_devices_last_seen_at_device_id", "devices", ["last_seen_at", "device_id"]),
    ("ix_devices_active_expiry_device_id", "devices", ["active_expiry", "device_id"]),
    ("ix_devices_enrolled_at_device_id", "devices", ["enrolled_at", "device_id"]),
    ("ix_deliveries_state_device_pk", "deliveries", ["state", "device_pk"]),
    ("ix_audit_events_target_id", "audit_events", ["target", "id"]),
)


def _device_id_collation(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite compares text by code point already
    op.alter_column(
        "devices",
        "device_id",
        existing_type=sa.String(length=64),
        type_=sa.String(length=64, collation=collation),
        existing_nullable=False,
    )


def upgrade() -> None:
    _device_id_collation("C")
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    _device_id_collation("default")
