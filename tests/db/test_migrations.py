"""Every migration, down and up again, on SQLite and PostgreSQL, with real rows in the tables.

The rows are made through the service layer at head (a token with two passwords, its scope
map, an API key, a device group with a secret, an enrolled and rotated device with its
deliveries, a scheduler pass, a planned disable), so every table and every column a later
revision added holds something. Stepping down, each revision must keep its own tables' rows
as they were, column for column, and hold exactly the tables and columns it defines; going
up again must bring the schema back to what the models say, with the surviving rows intact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import fleet.db.devices
import fleet.db.models  # noqa: F401  (the tables the comparison needs)
from fleet.bootstrap import initialise
from fleet.db.engine import make_engine
from fleet.db.migrate import alembic_config
from fleet.domain.rules import RepositoryActions
from fleet.scheduler import FleetScheduler
from fleet.services import Services
from fleet.services.http_broker import HttpAuthBroker
from fleet.services.leadership import FileLeadership
from tests.conftest import FakeClock, make_settings
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker
from tests.support.postgres import fresh_schema

Rows = dict[str, list[dict[str, Any]]]

# What each revision defines, written out: tables, and the columns a later revision adds.
TABLES_0001 = {
    "api_keys",
    "audit_events",
    "scope_maps",
    "scope_map_entries",
    "tokens",
    "token_passwords",
}
TABLES_0002 = TABLES_0001 | {"device_groups", "devices", "enrollment_secrets", "deliveries"}
TABLES_0003 = TABLES_0002 | {"scheduler_runs"}
TABLES_AT: dict[str, set[str]] = {
    "0001": TABLES_0001,
    "0002": TABLES_0002,
    "0003": TABLES_0003,
    "0004": TABLES_0003,
    "0005": TABLES_0003 | {"operators", "token_health", "login_failures_hourly"},
    "0006": TABLES_0003 | {"operators", "token_health", "login_failures_hourly"},
}
TABLES_AT["0007"] = TABLES_AT["0005"] | {"activity_hourly"}  # the overview's
TABLES_AT["0008"] = TABLES_AT["0007"]  # the device list's collation and indexes
TABLES_AT["0009"] = TABLES_AT["0008"] | {"webhook_outbox"}  # the warning webhook's
TABLES_AT["0010"] = TABLES_AT["0009"]  # JWT lifetimes and access ends
TABLES_AT["0011"] = TABLES_AT["0010"]  # device MQTT login hashes (FLEET_MQTT_AUTH=http)
TABLES_AT["0012"] = TABLES_AT["0011"] | {"shared_keys"}  # the keys every server signs with
TABLES_AT["0013"] = TABLES_AT["0012"] | {"bulk_jobs"}  # a group rotated or disabled at once
ADDED_IN_0003 = {
    "devices": {"active_expiry", "rotate_due_at", "retire_slot", "retire_due_at", "warn_due_at"},
    "tokens": {"disable_at"},
}
ADDED_IN_0010 = {
    "device_groups": {"jwt_lifetime_s", "jwt_lifetime_before_s", "jwt_lifetime_changed_at"},
    "tokens": {"access_ends_at"},
}
ADDED_IN_0011 = {"devices": {"mqtt_login_hash"}}
ADDED_LATER = (("0003", ADDED_IN_0003), ("0010", ADDED_IN_0010), ("0011", ADDED_IN_0011))
# What a column added to existing rows holds: its server default, else nothing.
COLUMN_DEFAULTS = {"jwt_lifetime_s": 60}
HEAD = "0013"
DOWN_TO = (
    *("0012", "0011", "0010", "0009", "0008", "0007", "0006"),
    *("0005", "0004", "0003", "0002", "0001"),
)
NOTIFY_TRIGGER = "fleet_credentials_changed"
NOTIFY_TABLES = {"tokens", "token_passwords", "scope_maps", "scope_map_entries"}
NOTIFY_TABLES_0010 = NOTIFY_TABLES | {"device_groups"}


def dropped_below(target: str) -> dict[str, set[str]]:
    """The columns added after ``target`` to tables it already had."""
    dropped: dict[str, set[str]] = {}
    for since, added in ADDED_LATER:
        if target < since:
            for table, columns in added.items():
                dropped[table] = dropped.get(table, set()) | columns
    return dropped


def triggers_at(target: str, dialect: str) -> set[str]:
    if dialect != "postgresql" or target < "0004":
        return set()
    return NOTIFY_TABLES_0010 if target >= "0010" else NOTIFY_TABLES


def test_the_shared_keys_are_sealed_never_plain(fresh_url: str, tmp_path: Path) -> None:
    fill(fresh_url, tmp_path)
    engine = make_engine(fresh_url)
    try:
        rows = read_rows(engine)["shared_keys"]
    finally:
        engine.dispose()
    assert {row["name"] for row in rows} == {"jwt-key-ring", "envelope-signing-key"}
    for row in rows:
        assert row["version"] >= 1
        assert b"PRIVATE KEY" not in row["sealed"] and b"kid" not in row["sealed"]


VERSION_TABLE = "alembic_version"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL schema of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    with fresh_schema("fleet_mig") as url:  # skips when unreachable, fails in CI
        yield url


@pytest.fixture
def engine(fresh_url: str) -> Iterator[Engine]:
    made = make_engine(fresh_url)
    yield made
    made.dispose()


def migrate(engine: Engine, direction: str, target: str) -> None:
    """``alembic upgrade|downgrade TARGET`` on this engine, as fleet.db.migrate runs it."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, target)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def fill(url: str, tmp_path: Path) -> None:
    """Rows in every table, through the service layer (which migrates to head first)."""
    clock = FakeClock()
    # A webhook (never called here: its sender is not run) so a warning queues an event.
    settings = make_settings(tmp_path / "data", url, warning_webhook_url="http://127.0.0.1:9/")
    services: Services = initialise(settings)
    try:
        services.ctx.clock = clock
        services.broker = FakeBroker()
        services.scope_maps.ensure_system_maps()
        rules = [RepositoryActions("edge/*", ("content/read", "metadata/read"))]
        services.scope_maps.create("devices-read", rules, actor="t")
        services.tokens.create(
            "ci-pusher", repositories=[RepositoryActions("app/*", ("content/write",))], actor="t"
        )
        services.tokens.update("ci-pusher", disable_at=clock() + timedelta(days=90), actor="t")
        services.api_keys.create("ops", actor="t")
        services.operators.create("alice", "admin", "correct horse battery", actor="t")
        services.health.login_ok("ci-pusher", "192.0.2.1")
        services.health.login_failed("ci-pusher", "192.0.2.2")
        services.health.flush()
        services.groups.create("pilots", scope_map="devices-read", actor="t")
        secret = services.groups.create_secret("pilots", actor="t").value or ""
        device = new_device("rpi-0001")
        _, mqtt_password = services.devices.enroll("rpi-0001", secret, *device.keys)
        # Its login as FLEET_MQTT_AUTH=http keeps it (the column of 0011).
        http_mode = dataclasses.replace(settings, mqtt_url="mqtt://127.0.0.1:9")
        HttpAuthBroker(http_mode, services.ctx.hasher, services.ctx.db, None).provision_device(
            "rpi-0001", "rpi-0001", mqtt_password
        )
        services.delivery.handle_status(
            "rpi-0001", b'{"type": "ack", "kind": "credentials", "version": 1}'
        )
        clock.advance(days=24)  # past the first rotation: a second slot and delivery
        scheduler = FleetScheduler(services, FileLeadership(tmp_path / "scheduler.lock"))
        scheduler.tick()
        clock.advance(days=4)  # 3 days before the unacknowledged password expires: a warning
        scheduler.tick()
        scheduler.stop()
        clock.advance(hours=2)
        services.overview.page()  # keeps the ended hours' activity
        job = services.jobs.start("rotate", "pilots", actor="t")
        services.jobs.run(job.id)
    finally:
        services.close()


def read_rows(engine: Engine) -> Rows:
    """Every row of every table as the database holds it now (reflected, not the models)."""
    meta = MetaData()
    with engine.connect() as conn:
        meta.reflect(conn)
        return {
            name: [
                dict(row._mapping)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            ]
            for name, table in meta.tables.items()
            if name != VERSION_TABLE
        }


def project(rows: Rows, tables: set[str], dropped: dict[str, set[str]]) -> Rows:
    """``rows`` as a revision holding only ``tables``, without the ``dropped`` columns."""
    return {
        name: [{k: v for k, v in row.items() if k not in dropped.get(name, set())} for row in table]
        for name, table in rows.items()
        if name in tables
    }


def notify_triggers(engine: Engine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname = :name AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"name": NOTIFY_TRIGGER},
        ).all()
    return {name for (name,) in found}


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_the_schema_at_head_is_the_models(engine: Engine) -> None:
    migrate(engine, "upgrade", "head")
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []


def test_each_downgrade_keeps_its_revisions_rows_and_the_way_back_up_restores_the_schema(
    engine: Engine, fresh_url: str, tmp_path: Path
) -> None:
    fill(fresh_url, tmp_path)
    at_head = read_rows(engine)
    assert set(at_head) == TABLES_AT[HEAD]
    assert all(at_head[name] for name in TABLES_AT[HEAD]), {k: len(v) for k, v in at_head.items()}
    expected_triggers = triggers_at(HEAD, engine.dialect.name)
    assert notify_triggers(engine) == expected_triggers

    for target in DOWN_TO:
        migrate(engine, "downgrade", target)
        assert current_revision(engine) == target
        dropped = dropped_below(target)
        assert read_rows(engine) == project(at_head, TABLES_AT[target], dropped), target
        columns = inspect(engine).get_columns
        for since, added_then in ADDED_LATER:
            for table, added in added_then.items():
                if table in TABLES_AT[target]:
                    held = {c["name"] for c in columns(table)}
                    assert (added <= held) is (target >= since), (target, table)
        assert notify_triggers(engine) == triggers_at(target, engine.dialect.name), target

    migrate(engine, "downgrade", "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {VERSION_TABLE}

    migrate(engine, "upgrade", "head")
    assert schema_diff(engine) == []
    assert notify_triggers(engine) == expected_triggers


def test_down_to_each_revision_and_up_again_keeps_the_surviving_rows(
    engine: Engine, fresh_url: str, tmp_path: Path
) -> None:
    fill(fresh_url, tmp_path)
    at_head = read_rows(engine)
    for target in DOWN_TO:
        migrate(engine, "downgrade", target)
        migrate(engine, "upgrade", "head")
        assert current_revision(engine) == HEAD
        assert schema_diff(engine) == []
        # What the round trip dropped comes back empty; every other row is as it was.
        back = read_rows(engine)
        dropped = dropped_below(target)
        kept_tables = TABLES_AT[target]
        assert project(back, kept_tables, dropped) == project(at_head, kept_tables, dropped)
        for table, added in dropped.items():
            if table in kept_tables:
                assert all(
                    row[c] == COLUMN_DEFAULTS.get(c) for row in back[table] for c in added
                ), table
        for table in TABLES_AT[HEAD] - kept_tables:
            assert back[table] == [], table
        at_head = back
    # The service layer works on the database that went down and up again.
    services = initialise(make_settings(tmp_path / "data", fresh_url))
    try:
        made = services.tokens.create("after", scope_map="_repositories_pull", actor="t")
        password = made.passwords[0].value or ""
        assert services.registry_auth.authenticate("after", password) is not None
        assert services.registry_auth.authenticate("ci-pusher", "fltp_wrong") is None
    finally:
        services.close()
