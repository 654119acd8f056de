"""A database for a ``fleet serve``: SQLite in its data directory, or a new PostgreSQL schema.

End-to-end fixtures are parametrised over :data:`DATABASES`; the PostgreSQL case is marked
``postgres``. For it, :func:`server_database_url` makes a schema of its own on the local server
(``FLEET_TEST_POSTGRES_URL``, as in ``tests/conftest.py``), hands out a URL whose
``search_path`` is that schema, and drops the schema afterwards. Every server gets its own
schema: two servers with different secret keys must never share tables. An unreachable
PostgreSQL skips these tests locally and fails them in CI (``CI=true``).

::

    @pytest.fixture(scope="session", params=DATABASES)
    def fleet_server(request, tmp_path_factory):
        with server_database_url(request.param) as url:
            ...  # FLEET_DATABASE_URL=url; "" means the server's default, SQLite
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DATABASES = [SQLITE, pytest.param(POSTGRESQL, marks=pytest.mark.postgres)]
POSTGRES_URL = os.environ.get(
    "FLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CONNECT_TIMEOUT_S = 3


def _unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # any failure means "not reachable"
        return f"{exc.__class__.__name__}: {exc}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    """Skip the test when PostgreSQL is unreachable; fail it in CI."""
    problem = _unreachable()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} in CI: {problem}")
    pytest.skip(f"PostgreSQL not reachable: {problem}")


@contextlib.contextmanager
def fresh_schema(prefix: str = "fleet_e2e") -> Iterator[str]:
    """A new, empty schema for the duration; the URL of the database with it as search_path."""
    require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in POSTGRES_URL else "?"
        try:
            yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def count_rows(url: str, table: str) -> int:
    """Rows in ``table`` of the database (schema) at ``url``: proof a server writes there."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count: int = conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
    finally:
        engine.dispose()
    return count


@contextlib.contextmanager
def server_database_url(database: str) -> Iterator[str]:
    """``FLEET_DATABASE_URL`` for a server on ``database`` (one of :data:`DATABASES`):
    empty for SQLite (the server's default file in its data directory), else a fresh schema."""
    if database == SQLITE:
        yield ""
    elif database == POSTGRESQL:
        with fresh_schema() as url:
            yield url
    else:
        raise ValueError(f"unknown database {database!r}")
