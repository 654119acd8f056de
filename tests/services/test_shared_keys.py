"""The keys every server signs with, kept once in the database (fleet/services/shared_keys.py).

Each test has a database of its own (a SQLite file, or a fresh PostgreSQL schema), since the
keys are the deployment's. Two "servers" are two sets of services with separate data
directories on that database.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import select

from fleet.bootstrap import NotInitialisedError, build_services, initialise
from fleet.config import Settings
from fleet.db.models import SharedKey
from fleet.registry_auth.keyring import STATE_FILE, KeyRing
from fleet.services import Services, shared_keys
from fleet.services.shared_keys import (
    ENVELOPE_KEY,
    KEY_RING,
    DatabaseRingStore,
    LocalKeyConflict,
    Sealer,
    SecretKeyMismatch,
    SharedKeyError,
    SharedKeys,
)
from tests.conftest import make_settings
from tests.support.postgres import fresh_schema

OTHER_SECRET_KEY = base64.b64encode(b"another-secret-key-of-at-least-32-bytes!").decode()
ServerSettings = Callable[..., Settings]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with fresh_schema("fleet_shared") as url:
        yield url


@pytest.fixture
def server(tmp_path: Path, database: str) -> ServerSettings:
    """``server(name, **overrides)``: the settings of one server on the shared database."""

    def settings(name: str, **overrides: object) -> Settings:
        return make_settings(tmp_path / name, database, **overrides)

    return settings


@pytest.fixture
def opened() -> Iterator[list[Services]]:
    made: list[Services] = []
    yield made
    for services in made:
        services.close()


def rows(services: Services) -> dict[str, SharedKey]:
    with services.ctx.db.session() as s:
        return {row.name: row for row in s.exec(select(SharedKey)).all()}


def envelope_public(services: Services) -> bytes:
    return services.envelopes.envelope_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_two_servers_sign_with_the_same_keys_and_none_is_stored_plain(
    server: ServerSettings, opened: list[Services]
) -> None:
    one = initialise(server("one"))
    two = initialise(server("two"))  # its own data directory, `fleet init` run there too
    opened += [one, two]
    assert envelope_public(one) == envelope_public(two)
    assert one.signing.ring.signing_key().kid == two.signing.ring.signing_key().kid
    held = rows(one)
    assert set(held) == {KEY_RING, ENVELOPE_KEY}
    secret_pem = one.envelopes.envelope_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    for row in held.values():
        assert b"PRIVATE KEY" not in row.sealed and secret_pem not in row.sealed
    for name in ("one", "two"):  # nothing of the keys in either data directory
        assert not (server(name).signing_key_dir / STATE_FILE).exists()
        assert not server(name).envelope_key_file.exists()
    # The bundle each writes in its own data directory is the same.
    assert (
        server("one").registry_bundle_file.read_bytes()
        == server("two").registry_bundle_file.read_bytes()
    )


def test_a_server_given_another_secret_key_refuses_to_start(
    server: ServerSettings, opened: list[Services]
) -> None:
    opened.append(initialise(server("one")))
    before = rows(opened[0])
    for start in (initialise, build_services):
        with pytest.raises(SecretKeyMismatch) as caught:
            start(server("two", secret_key=OTHER_SECRET_KEY))
        assert "same secret key" in caught.value.message
        assert "FLEET_SECRET_KEY" in caught.value.message
    assert {n: (r.version, r.sealed) for n, r in rows(opened[0]).items()} == {
        n: (r.version, r.sealed) for n, r in before.items()
    }


def test_a_row_cannot_be_read_under_another_name() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal(KEY_RING, b"the ring")
    assert sealer.open(KEY_RING, sealed) == b"the ring"
    with pytest.raises(SecretKeyMismatch):
        sealer.open(ENVELOPE_KEY, sealed)
    with pytest.raises(SecretKeyMismatch):
        sealer.open(KEY_RING, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    assert sealer.seal(KEY_RING, b"the ring") != sealed  # a fresh nonce each time


def test_init_moves_an_older_data_directorys_key_files_into_the_database_once(
    server: ServerSettings, opened: list[Services]
) -> None:
    old = server("old")
    ring = KeyRing.open(old.signing_key_dir)  # what `fleet init` of an earlier release wrote
    envelope = Ed25519PrivateKey.generate()
    old.envelope_key_file.write_bytes(
        envelope.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    said: list[str] = []
    services = initialise(old, said.append)
    opened.append(services)
    assert services.signing.ring.signing_key().kid == ring.signing_key().kid
    assert envelope_public(services) == envelope.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert len(said) == 2 and all("moved" in line for line in said), said
    assert not (old.signing_key_dir / STATE_FILE).exists()
    assert not old.envelope_key_file.exists()
    said.clear()
    opened.append(initialise(old, said.append))  # twice: nothing more to move
    assert said == []


def test_a_second_servers_own_key_files_never_win(
    server: ServerSettings, opened: list[Services]
) -> None:
    one = initialise(server("one"))
    opened.append(one)
    two = server("two")
    KeyRing.open(two.signing_key_dir)  # a key ring of its own, made before it joined
    with pytest.raises(NotInitialisedError) as refused:
        build_services(two)  # `fleet serve` never signs with it nor ignores it unsaid
    assert "fleet init" in refused.value.message
    with pytest.raises(LocalKeyConflict) as conflict:
        initialise(two)
    assert str(two.signing_key_dir / STATE_FILE) in conflict.value.message
    assert (two.signing_key_dir / STATE_FILE).exists()  # left for the operator to judge
    assert rows(one)[KEY_RING].version == 1  # the database's ring is untouched


def test_a_copy_of_the_key_files_already_moved_is_removed(
    server: ServerSettings, opened: list[Services], tmp_path: Path
) -> None:
    one, two = server("one"), server("two")
    KeyRing.open(one.signing_key_dir)
    copy = (one.signing_key_dir / STATE_FILE).read_bytes()
    two.signing_key_dir.mkdir(parents=True)
    (two.signing_key_dir / STATE_FILE).write_bytes(copy)  # the data directory was copied
    opened.append(initialise(one))
    said: list[str] = []
    opened.append(initialise(two, said.append))
    assert any("already holds the same keys" in line for line in said), said
    assert not (two.signing_key_dir / STATE_FILE).exists()


def test_two_servers_rotating_and_revoking_at_once_lose_no_key(
    server: ServerSettings, opened: list[Services]
) -> None:
    """Each thread stands for a server: its own ring object on the shared row."""
    services = initialise(server("one"))
    opened.append(services)
    first = services.signing.ring.signing_key().kid
    rounds, servers = 5, 4
    start = threading.Barrier(servers)
    made: list[str] = []
    errors: list[BaseException] = []

    def rotate_often() -> None:
        ring = KeyRing.open_store(DatabaseRingStore(SharedKeys.of(services.ctx)), publish_delay=600)
        start.wait()
        try:
            for _ in range(rounds):
                made.append(ring.rotate().kid)
        except BaseException as error:  # reported on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=rotate_often) for _ in range(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    ring = KeyRing.open_store(DatabaseRingStore(SharedKeys.of(services.ctx)))
    held = [entry.key.kid for entry in ring.entries]
    assert sorted(held) == sorted([first, *made])  # every key any of them made is there
    assert rows(services)[KEY_RING].version == 1 + rounds * servers

    # Revoking at once: each revokes a different waiting key; every other key stays.
    victims = made[:servers]
    start = threading.Barrier(servers)

    def revoke(kid: str) -> None:
        other = KeyRing.open_store(DatabaseRingStore(SharedKeys.of(services.ctx)))
        start.wait()
        try:
            other.revoke(kid)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=revoke, args=(kid,)) for kid in victims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert ring.refresh() is True
    assert sorted(e.key.kid for e in ring.entries) == sorted(set(held) - set(victims))


def test_the_ring_changes_another_server_made_are_seen_by_refresh(
    server: ServerSettings, opened: list[Services]
) -> None:
    one = initialise(server("one", key_publish_delay=0))
    two = initialise(server("two", key_publish_delay=0))
    opened += [one, two]
    assert two.signing.ring.refresh() is False  # one query, nothing to reread
    rotated = one.signing.rotate()
    # The JWKS rereads the ring's version on every request; the bundle follows the change.
    assert rotated.kid in {key["kid"] for key in two.signing.jwks()["keys"]}
    assert two.signing.ring.signing_key().kid == rotated.kid
    assert (
        server("one").registry_bundle_file.read_bytes()
        == server("two").registry_bundle_file.read_bytes()
    )


def test_unknown_rows_and_oversized_files_are_refused(
    server: ServerSettings, opened: list[Services], tmp_path: Path
) -> None:
    services = initialise(server("one"))
    opened.append(services)
    keys = SharedKeys.of(services.ctx)
    with pytest.raises(Exception, match="unknown shared key"), keys.locked("other"):
        pass
    big = tmp_path / "big.key"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(Exception, match="not a key file"):
        keys.adopt_file(ENVELOPE_KEY, big)
    assert big.exists()
    assert keys.adopt_file(ENVELOPE_KEY, tmp_path / "absent") is None


def test_a_rotation_past_the_rows_bound_is_refused_and_changes_nothing(
    server: ServerSettings, opened: list[Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = initialise(server("one"))
    opened.append(services)
    before = rows(services)[KEY_RING]
    with SharedKeys.of(services.ctx).locked(KEY_RING) as document:
        size = len(document.data or b"")
    monkeypatch.setattr(shared_keys, "MAX_PLAIN_BYTES", size + 100)  # no room for one more key
    with pytest.raises(SharedKeyError, match="nothing was changed"):
        services.signing.ring.rotate()
    after = rows(services)[KEY_RING]
    assert (after.version, after.sealed) == (before.version, before.sealed)
    again = KeyRing.open_store(DatabaseRingStore(SharedKeys.of(services.ctx)))
    assert [e.key.kid for e in again.entries] == [services.signing.ring.signing_key().kid]
