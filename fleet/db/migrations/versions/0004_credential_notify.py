"""credential change notifications (PostgreSQL)

Every committed change to a token, a password, a scope map or a scope map entry sends
``NOTIFY fleet_credentials`` with the changed table's schema as payload, so every server's
token endpoint drops what it kept of any credential before its next request
(``fleet.services.credential_changes``). Statement triggers, not row triggers: a bulk change
sends one notification, and PostgreSQL folds identical notifications of one transaction into
one. SQLite needs nothing: its endpoint watches the WAL-index header that every commit
rewrites (``PRAGMA data_version`` outside WAL mode).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 09:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Kept literal: a migration must not change when the application's constants do.
CHANNEL = "fleet_credentials"
FUNCTION = "fleet_credentials_changed"
TABLES = ("tokens", "token_passwords", "scope_maps", "scope_map_entries")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA);
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {FUNCTION} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
