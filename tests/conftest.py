"""Shared fixtures: a database per test on SQLite, and on PostgreSQL when it is reachable.

The PostgreSQL URL comes from FLEET_TEST_POSTGRES_URL (default: the local server's `test`
database). In CI (CI=true) an unreachable PostgreSQL is an error, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlmodel import SQLModel

from fleet.bootstrap import initialise
from fleet.config import Settings, load_settings
from fleet.services import Services
from tests.support.postgres import fresh_schema

TEST_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LW9mLWF0LWxlYXN0LTMyLWJ5dGVzIQ=="


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test session, dropped at the end."""
    with fresh_schema("fleet_test") as url:
        yield url


def make_settings(data_dir: Path, database_url: str = "", **overrides: object) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "data_dir": data_dir,
            "database_url": database_url,
            "secret_key": TEST_SECRET_KEY,
            "scheduler_enabled": "false",  # tests drive the reconciler themselves
            **overrides,
        },
    )


def _truncate_all(services: Services) -> None:
    engine = services.ctx.db.engine
    # The shared keys stay: the services just built hold them (a deployment's keys outlive
    # its rows, and a ring or envelope key made afresh would not be the one they sign with).
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables) if t.name != "shared_keys"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_factory(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    def build(**overrides: object) -> Settings:
        return make_settings(tmp_path / "data", db_url, **overrides)

    return build


@pytest.fixture
def make_services(settings_factory, clock: FakeClock):  # type: ignore[no-untyped-def]
    """Services on an empty database of this test's kind, with settings overridden."""
    built: list[Services] = []

    def make(**overrides: object) -> Services:
        services = initialise(settings_factory(**overrides))
        _truncate_all(services)
        services.scope_maps.ensure_system_maps()
        services.ctx.clock = clock
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


@pytest.fixture
def services(make_services) -> Services:  # type: ignore[no-untyped-def]
    built: Services = make_services()
    return built


# -- Hypothesis profiles ---------------------------------------------------------------------
# HYPOTHESIS_PROFILE=nightly runs 10,000 examples per property test that does not fix its own
# count (tests/domain/test_grant_properties.py, the envelope mutations); "ci", the default,
# is sized for scripts/test. tests/e2e/fuzz has its own knob, FLEET_FUZZ_EXAMPLES.
NIGHTLY_EXAMPLES = 10_000
settings.register_profile("ci", deadline=None)
settings.register_profile("nightly", max_examples=NIGHTLY_EXAMPLES, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
