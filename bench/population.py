"""The benchmark's database: a dedicated PostgreSQL schema or a SQLite file, and bulk tokens.

Tokens are added with two SQLAlchemy Core statements per batch on SQLite (an ``executemany``
insert of the tokens, then ``INSERT ... SELECT`` of one password row each), which is what bulk
work in this project uses: the ORM would take minutes for 50,000 tokens. On PostgreSQL they are
written with ``COPY`` (explicit ids after the largest, the sequence moved past them), then
analysed (measured: 2.0 s against 4.5 s with the row inserts for 100,000 tokens).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, create_engine, func, insert, literal, select, text

from fleet.db.engine import make_engine
from fleet.db.models import ENABLED, Token, TokenPassword

BULK_PREFIX = "bulk-"
BATCH_ROWS = 5_000
COPY_BATCH_ROWS = 100_000
# Never matches any offered password: a keyed hash is 64 hex characters, this is not hex.
UNUSABLE_HASH = "x" * 64

_tokens = Token.__table__  # type: ignore[attr-defined]
_passwords = TokenPassword.__table__  # type: ignore[attr-defined]


@contextmanager
def database_url(database: str, postgres_url: str) -> Iterator[str]:
    """'' for SQLite in the data directory, else a PostgreSQL schema of its own, dropped at
    the end (``database`` is a benchmark's ``--database``)."""
    if database == "sqlite":
        yield ""
    else:
        with postgres_schema(postgres_url) as url:
            yield url


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema in ``base_url``'s database for this run, dropped afterwards."""
    schema = f"fleet_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def token_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_tokens)).scalar_one())


def fill_tokens(engine: Engine, target: int, scope_map_id: int) -> float:
    """Add bulk tokens (each with one unusable password) until ``target`` tokens exist.

    Returns the seconds it took.
    """
    started = time.perf_counter()
    have = token_count(engine)
    if engine.dialect.name == "postgresql":
        _copy_tokens(engine, have, target, scope_map_id)
        return time.perf_counter() - started
    already = have
    while have < target:
        batch = min(BATCH_ROWS, target - have)
        now = datetime.now(UTC)
        rows = [
            {
                "name": f"{BULK_PREFIX}{already + i:06d}",
                "status": ENABLED,
                "scope_map_id": scope_map_id,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(batch)
        ]
        with engine.begin() as conn:
            first_id = conn.execute(select(func.coalesce(func.max(_tokens.c.id), 0))).scalar_one()
            conn.execute(insert(_tokens), rows)
            conn.execute(
                insert(_passwords).from_select(
                    ["token_id", "slot", "secret_hash", "created_at"],
                    select(
                        _tokens.c.id,
                        literal("password1"),
                        literal(UNUSABLE_HASH),
                        literal(now, type_=_passwords.c.created_at.type),
                    ).where(_tokens.c.id > first_id),
                )
            )
        already += batch
        have += batch
    return time.perf_counter() - started


def _copy_tokens(engine: Engine, have: int, target: int, scope_map_id: int) -> None:
    """PostgreSQL: ``COPY`` the tokens and their passwords, batch after batch."""
    already = have
    while have < target:
        batch = min(COPY_BATCH_ROWS, target - have)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            first_id = conn.execute(select(func.coalesce(func.max(_tokens.c.id), 0))).scalar_one()
            first_pw = conn.execute(
                select(func.coalesce(func.max(_passwords.c.id), 0))
            ).scalar_one()
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(
                "COPY tokens (id, name, status, scope_map_id, created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(batch):
                    copy.write_row(
                        (
                            first_id + 1 + i,
                            f"{BULK_PREFIX}{already + i:07d}",
                            ENABLED,
                            scope_map_id,
                            now,
                            now,
                        )
                    )
            with cursor.copy(
                "COPY token_passwords (id, token_id, slot, secret_hash, created_at) FROM STDIN"
            ) as copy:
                for i in range(batch):
                    copy.write_row(
                        (first_pw + 1 + i, first_id + 1 + i, "password1", UNUSABLE_HASH, now)
                    )
            for table in ("tokens", "token_passwords"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        already += batch
        have += batch
    with engine.connect() as conn:
        conn.execute(text("ANALYZE tokens, token_passwords"))
        conn.commit()


def open_engine(url: str) -> Engine:
    return make_engine(url)
