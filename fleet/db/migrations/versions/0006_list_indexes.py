"""indexes for paged lists

Every list is read page by page with ``WHERE key > :after ORDER BY key LIMIT n + 1``. These
indexes start with a list's filter and end with its sort key, so a page is an index range
scan whatever its position: the scope maps (system-defined first, then by name), a scope
map's tokens by name, the devices of a group and/or status by device id, and a group's
enrollment secrets by id (PostgreSQL keeps equal keys of a one-column index in heap order,
not by id). Tokens, groups
and unfiltered devices are paged on their names' existing unique indexes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_scope_maps_type_name", "scope_maps", ["type", "name"]),
    ("ix_tokens_scope_map_id_name", "tokens", ["scope_map_id", "name"]),
    ("ix_devices_group_id_device_id", "devices", ["group_id", "device_id"]),
    ("ix_devices_group_id_status_device_id", "devices", ["group_id", "status", "device_id"]),
    ("ix_devices_status_device_id", "devices", ["status", "device_id"]),
    ("ix_enrollment_secrets_group_id_id", "enrollment_secrets", ["group_id", "id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
