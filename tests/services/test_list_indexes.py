"""Migration 0006: the paged lists' indexes, as the models declare them, and its downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlmodel import SQLModel

from fleet.db.migrate import alembic_config
from fleet.services import Services

LIST_INDEXES = {
    "ix_scope_maps_type_name": ("scope_maps", ["type", "name"]),
    "ix_tokens_scope_map_id_name": ("tokens", ["scope_map_id", "name"]),
    "ix_devices_group_id_device_id": ("devices", ["group_id", "device_id"]),
    "ix_devices_group_id_status_device_id": ("devices", ["group_id", "status", "device_id"]),
    "ix_devices_status_device_id": ("devices", ["status", "device_id"]),
    "ix_enrollment_secrets_group_id_id": ("enrollment_secrets", ["group_id", "id"]),
}


def _indexes(services: Services) -> dict[str, tuple[str, list[str]]]:
    inspector = inspect(services.ctx.db.engine)
    return {
        ix["name"]: (table, list(ix["column_names"]))
        for table in ("scope_maps", "tokens", "devices", "enrollment_secrets")
        for ix in inspector.get_indexes(table)
        if ix["name"] in LIST_INDEXES
    }


def _migrate(services: Services, target: str, *, down: bool = False) -> None:
    engine = services.ctx.db.engine
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def test_models_declare_the_indexes_the_migration_creates(services: Services) -> None:
    assert _indexes(services) == LIST_INDEXES
    declared = {
        ix.name: (table.name, [c.name for c in ix.columns])
        for table in SQLModel.metadata.sorted_tables
        for ix in table.indexes
        if ix.name in LIST_INDEXES
    }
    assert declared == LIST_INDEXES


def test_downgrade_drops_them_and_upgrade_restores_them(services: Services) -> None:
    _migrate(services, "0005", down=True)
    assert _indexes(services) == {}
    _migrate(services, "head")
    assert _indexes(services) == LIST_INDEXES
    services.tokens.create("after-migration", scope_map="_repositories_pull", actor="test")
    assert [t.name for t in services.tokens.list().items] == ["after-migration"]
