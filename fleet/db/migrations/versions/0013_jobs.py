"""bulk_jobs: an operator's rotate or disable of a whole group, run in the background

Each job is a row any server can answer for; its cursor (the highest device key done) moves
in the transaction of each batch, so a job taken over after its server died resumes where it
stopped and does no device twice. ``active_key`` is unique while a job is queued or running:
one job per group and kind at a time. ``devices`` gains an index on (group_id, id), the
order a job pages a group in.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import fleet.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_bulk_jobs_state_heartbeat_at", ["state", "heartbeat_at"]),
    ("ix_bulk_jobs_group_id_id", ["group_id", "id"]),
)
DEVICE_INDEX = ("ix_devices_group_id_id", ["group_id", "id"])


def upgrade() -> None:
    when = fleet.db.types.UTCDateTime(timezone=True)
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "bulk_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", text(length=16), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("group_name", text(length=64), nullable=False),
        sa.Column("state", text(length=16), nullable=False),
        sa.Column("active_key", text(length=48), nullable=True),
        sa.Column("actor", text(length=128), nullable=False),
        sa.Column("reason", text(length=256), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", text(length=4096), nullable=False),
        sa.Column("last_pk", sa.Integer(), nullable=False),
        sa.Column("cursor_pk", sa.Integer(), nullable=False),
        sa.Column("settled_pk", sa.Integer(), nullable=False),
        sa.Column("claim_token", text(length=36), nullable=True),
        sa.Column("heartbeat_at", when, nullable=True),
        sa.Column("message", text(length=512), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("started_at", when, nullable=True),
        sa.Column("finished_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_key"),
    )
    for name, columns in INDEXES:
        op.create_index(name, "bulk_jobs", columns)
    op.create_index(DEVICE_INDEX[0], "devices", DEVICE_INDEX[1])


def downgrade() -> None:
    op.drop_index(DEVICE_INDEX[0], table_name="devices")
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
