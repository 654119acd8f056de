"""the dashboard's overview: its indexes and activity_hourly

The overview counts expiring credentials and silent devices (per group) among the active
ones, and groups deliveries by hour (rotations by creation, acknowledgements by their time).
Each of these becomes an index range scan instead of a scan of every device or delivery.
``activity_hourly`` keeps each ended hour's counts, so the chart reads a week of small rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import fleet.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_devices_status_expiry", "devices", ["status", "active_expiry"]),
    ("ix_devices_status_group_last_seen", "devices", ["status", "group_id", "last_seen_at"]),
    ("ix_deliveries_kind_created_at", "deliveries", ["kind", "created_at"]),
    ("ix_deliveries_acked_at", "deliveries", ["acked_at"]),
)


def upgrade() -> None:
    op.create_table(
        "activity_hourly",
        sa.Column("hour", fleet.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rotations", sa.Integer(), nullable=False),
        sa.Column("acked", sa.Integer(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour"),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("activity_hourly")
