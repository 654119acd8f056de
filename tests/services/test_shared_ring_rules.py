"""The key ring's rules (publish delay, retirement, revocation, pruning, refresh) hold on the
database's store exactly as on the file: tests/registry_auth/test_keyring.py's own tests, run
with each ring opened on a ``shared_keys`` row instead of a directory.

The tests that look at the file itself (its mode, its bytes) are left to the file store; the
row's sealing and locking are tests/services/test_shared_keys.py's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel

import tests.registry_auth.test_keyring as rules
from fleet.db.engine import Database
from fleet.db.models import SharedKey
from fleet.registry_auth.keyring import KeyRing
from fleet.services.shared_keys import DatabaseRingStore, Sealer, SharedKeys

FILE_ONLY = {
    "test_opening_an_empty_directory_creates_one_private_key",  # the file's mode
    "test_an_unreadable_ring_is_reported",  # the file's bytes
    "test_revoking_an_unknown_key_names_the_known_ones_and_changes_nothing",  # the file's bytes
    "test_bad_settings_are_refused",  # refused before any store is opened
}
RULES = sorted(
    name
    for name, function in vars(rules).items()
    if name.startswith("test_") and callable(function) and name not in FILE_ONLY
)


def database_rings(tmp_path: Path) -> Callable[..., KeyRing]:
    """``open_ring(path, clock, delay)``: one database (and so one ring) per ``path``."""
    stores: dict[Path, DatabaseRingStore] = {}

    def open_ring(path: Path, clock: Any, delay: float = rules.DELAY) -> KeyRing:
        store = stores.get(Path(path))
        if store is None:
            db = Database(f"sqlite:///{tmp_path / f'ring-{len(stores)}.db'}")
            SQLModel.metadata.create_all(db.engine, tables=[SharedKey.__table__])  # type: ignore[list-item]
            store = stores[Path(path)] = DatabaseRingStore(SharedKeys(db, Sealer(b"s" * 32)))
        return KeyRing.open_store(
            store, token_lifetime=rules.LIFETIME, publish_delay=delay, clock=clock
        )

    return open_ring


@pytest.mark.parametrize("name", RULES)
def test_the_key_ring_rule_holds_on_the_database(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "open_ring", database_rings(tmp_path))
    test = getattr(rules, name)
    given = {"tmp_path": tmp_path / "ring", "clock": rules.Clock()}
    (tmp_path / "ring").mkdir()
    test(**{p: given[p] for p in inspect.signature(test).parameters})


def test_every_rule_is_run_or_named_as_the_file_stores() -> None:
    assert len(RULES) >= 14
    assert set(vars(rules)) >= FILE_ONLY
