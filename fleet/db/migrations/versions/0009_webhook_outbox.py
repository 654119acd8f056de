"""webhook_outbox: the expiry-warning webhook's events, sent off the reconciler pass

The reconciler writes each warning's event here in the transaction of its audit row; a sender
of its own claims due rows with a lease, posts them and retries with backoff. Pending rows are
found by ``next_attempt_at``, sent and given-up ones are pruned by their time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import fleet.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the models do.
INDEXES = (
    ("ix_webhook_outbox_event_id", ["event_id"], True),
    ("ix_webhook_outbox_created_at", ["created_at"], False),
    ("ix_webhook_outbox_next_attempt_at", ["next_attempt_at"], False),
    ("ix_webhook_outbox_sent_at", ["sent_at"], False),
    ("ix_webhook_outbox_gave_up_at", ["gave_up_at"], False),
)


def upgrade() -> None:
    when = fleet.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=True),
        sa.Column("claim_token", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("claimed_until", when, nullable=True),
        sa.Column("last_attempt_at", when, nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
        sa.Column("sent_at", when, nullable=True),
        sa.Column("gave_up_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, columns, unique in INDEXES:
        op.create_index(name, "webhook_outbox", columns, unique=unique)


def downgrade() -> None:
    for name, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
