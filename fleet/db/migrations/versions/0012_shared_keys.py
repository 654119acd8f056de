"""shared_keys: what every server signs with, in the database, sealed

The JWT key ring and the envelope signing key leave the data directory: each is one row,
AES-GCM sealed under a key derived from the secret key (the row's name is the associated data),
so every server given the same secret key signs with the same keys. ``version`` grows on each
write so a server rereads a row only when it changed. ``fleet init`` moves the files of an
existing data directory here (fleet/services/shared_keys.py); the migration itself holds no key.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import fleet.db.types

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shared_keys",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", fleet.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("shared_keys")
