"""Alembic environment: run by :mod:`fleet.db.migrate`, never needs an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import fleet.db.devices
import fleet.db.jobs
import fleet.db.models  # noqa: F401
from fleet.db.engine import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `fleet init`")
run_migrations_online()
