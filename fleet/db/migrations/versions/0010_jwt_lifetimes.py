"""Per-group registry JWT lifetimes, and when a revoked credential's last JWT expires

``device_groups`` gains the lifetime of its device tokens' JWTs (60 s unless set) and, while
JWTs issued under the previous lifetime may still be valid, that lifetime and when it changed.
``tokens`` gains ``access_ends_at``: when the registry last accepts a JWT issued before the
token was disabled or one of its passwords removed. On PostgreSQL the credential-change
trigger of migration 0004 is put on ``device_groups`` too: the token endpoint keeps a group's
lifetime with the token it looked up.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import fleet.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the application's constants do.
FUNCTION = "fleet_credentials_changed"
DEFAULT_LIFETIME_S = 60


def upgrade() -> None:
    when = fleet.db.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("device_groups", recreate="never") as batch:
        batch.add_column(
            sa.Column(
                "jwt_lifetime_s",
                sa.Integer(),
                nullable=False,
                server_default=str(DEFAULT_LIFETIME_S),
            )
        )
        batch.add_column(sa.Column("jwt_lifetime_before_s", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("jwt_lifetime_changed_at", when, nullable=True))
    with op.batch_alter_table("tokens", recreate="never") as batch:
        batch.add_column(sa.Column("access_ends_at", when, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {FUNCTION} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON device_groups FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON device_groups")
    # recreate="never", as in 0003: a copied table's DROP TABLE would, with foreign_keys=ON,
    # delete every row that references it.
    with op.batch_alter_table("tokens", recreate="never") as batch:
        batch.drop_column("access_ends_at")
    with op.batch_alter_table("device_groups", recreate="never") as batch:
        batch.drop_column("jwt_lifetime_changed_at")
        batch.drop_column("jwt_lifetime_before_s")
        batch.drop_column("jwt_lifetime_s")
