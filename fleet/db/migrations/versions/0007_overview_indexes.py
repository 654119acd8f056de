"""indexes for the dashboard's overview

The overview counts expiring credentials and silent devices among the active ones, and
groups a week of deliveries by hour (rotations by creation, acknowledgements by their time).
Each of these becomes an index range scan instead of a scan of every device or delivery.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_devices_status_expiry", "devices", ["status", "active_expiry"]),
    ("ix_devices_status_last_seen", "devices", ["status", "last_seen_at"]),
    ("ix_deliveries_kind_created_at", "deliveries", ["kind", "created_at"]),
    ("ix_deliveries_acked_at", "deliveries", ["acked_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
