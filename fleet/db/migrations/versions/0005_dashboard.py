"""dashboard: operators, credential health, audit events indexed by actor and target

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import fleet.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", fleet.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", fleet.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", fleet.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operators_name"), ["name"], unique=True)
    op.create_table(
        "token_health",
        sa.Column("token_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("last_used_at", fleet.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", fleet.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "last_failed_address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
        sa.PrimaryKeyConstraint("token_name"),
    )
    op.create_table(
        "login_failures_hourly",
        sa.Column("hour", fleet.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "kind", "key"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_target"), ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_target"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor"))
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operators_name"))
    op.drop_table("operators")
    op.drop_table("login_failures_hourly")
    op.drop_table("token_health")
