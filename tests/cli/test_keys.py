"""``fleet keys rotate`` says when the new key signs everywhere, and a server keeps that promise;
``fleet keys revoke`` drops a key at once, and a server stops signing with it as promised.

A :class:`SigningService` opened on the same database stands for one worker of a server
sharing the key ring: it signs before the rotation (so it has just rechecked the ring, the worst
case), and from ``RING_CHECK_INTERVAL_S`` after the command ended it must sign with the new key.
The ring lives in the database (here the data directory's SQLite file), sealed with the secret
key that ``fleet init`` wrote.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography import x509

from fleet.bootstrap import load_secret_key
from fleet.cli import cli
from fleet.config import load_settings
from fleet.credentials import SecretHasher
from fleet.db.engine import Database
from fleet.domain.errors import ValidationError
from fleet.registry_auth.keyring import KeyRing
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services.context import ServiceContext
from fleet.services.shared_keys import DatabaseRingStore, SharedKeys
from fleet.services.signing import SigningService
from tests.support.timing import DEFAULT_POLL_S

PROMISE = re.compile(r"key (\S+) signs on every server sharing this key ring from (\S+) \((.+?)\)")


@dataclass(frozen=True)
class Rotated:
    kid: str
    everywhere_from: datetime
    message: str


def _env(data_dir: Path) -> dict[str, str | None]:
    """Only this test's data directory: a developer's FLEET_* variables are unset."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLEET_")}
    return {**unset, "FLEET_DATA_DIR": str(data_dir)}


def _initialised(tmp_path: Path) -> dict[str, str | None]:
    env = _env(tmp_path / "data")
    done = CliRunner().invoke(cli, ["init"], env=env)
    assert done.exit_code == 0, done.output
    return env


def _rotate(env: dict[str, str | None], delay: int) -> Rotated:
    done = CliRunner().invoke(cli, ["keys", "rotate", "--publish-delay", str(delay)], env=env)
    assert done.exit_code == 0, done.output
    promise = PROMISE.search(done.stderr)
    assert promise is not None, done.stderr
    return Rotated(promise[1], datetime.fromisoformat(promise[2]), done.stderr)


def _store(env: dict[str, str | None]) -> DatabaseRingStore:
    """The key ring's row, as another server on the same database reads it."""
    settings = load_settings(environ={k: v for k, v in env.items() if v})
    ctx = ServiceContext(
        db=Database(settings.resolved_database_url),
        settings=settings,
        hasher=SecretHasher(load_secret_key(settings)),
    )
    return DatabaseRingStore(SharedKeys.of(ctx))


def _signer(env: dict[str, str | None]) -> SigningService:
    settings = load_settings(environ={k: v for k, v in env.items() if v})
    return SigningService.open(settings, _store(env))


def _kid(signer: SigningService) -> str:
    token = signer.registry_token("someone", []).token
    return str(jwt.get_unverified_header(token)["kid"])


def test_the_help_states_what_no_delay_promises() -> None:
    shown = CliRunner().invoke(cli, ["keys", "rotate", "--help"])
    assert shown.exit_code == 0
    words = " ".join(shown.output.split())
    assert f"rechecks it every {RING_CHECK_INTERVAL_S:g} s" in words
    assert f"with --publish-delay 0, within {RING_CHECK_INTERVAL_S:g} s" in words


def test_with_no_delay_a_server_that_just_signed_switches_within_the_interval(
    tmp_path: Path,
) -> None:
    env = _initialised(tmp_path)
    signer = _signer(env)
    old = _kid(signer)  # this worker has just rechecked the ring: the longest wait is ahead

    rotated = _rotate(env, 0)
    ended = time.monotonic()
    assert rotated.kid != old
    assert f"within {RING_CHECK_INTERVAL_S:g} s" in rotated.message
    assert "restart them now" in rotated.message
    # Both clocks are this process's, and the bound is elapsed time, not work done: it holds
    # exactly on any machine, so it is not scaled.
    while time.monotonic() < ended + RING_CHECK_INTERVAL_S:
        assert _kid(signer) in {old, rotated.kid}
        time.sleep(DEFAULT_POLL_S)
    assert _kid(signer) == rotated.kid
    assert time.time() >= rotated.everywhere_from.timestamp()


def test_with_a_delay_the_new_key_signs_from_the_time_printed(tmp_path: Path) -> None:
    env = _initialised(tmp_path)
    old = _kid(_signer(env))

    rotated = _rotate(env, 300)
    assert "(in 300 s)" in rotated.message
    assert "restart them within 300 s" in rotated.message
    assert _kid(_signer(env)) == old  # a server that reads the ring now: published, not signing
    ring = KeyRing.open_store(_store(env))
    assert rotated.kid in {key.kid for key in ring.published_keys()}
    printed = rotated.everywhere_from.timestamp()  # to the millisecond, rounded down
    assert ring.signing_key(now=printed - 1).kid == old
    assert ring.signing_key(now=printed + 0.001).kid == rotated.kid


REVOKED = re.compile(
    r"revoked key (\S+): gone from the key ring, the bundle and the JWKS; (.+?); no server "
    r"sharing this key ring signs with \1 from (\S+) \(within (\S+) s\)"
)
RESTART = "restart every registry now: until then they still accept JWTs signed by {kid}"


def _ring(tmp_path: Path) -> KeyRing:
    return KeyRing.open_store(_store(_env(tmp_path / "data")))


def _bundle_kids(path: Path, ring: KeyRing) -> set[str]:
    by_certificate = {key.certificate: key.kid for key in ring.published_keys()}
    return {by_certificate.get(c, "?") for c in x509.load_pem_x509_certificates(path.read_bytes())}


def _revoke(env: dict[str, str | None], kid: str, *more: str) -> str:
    done = CliRunner().invoke(cli, ["keys", "revoke", "--kid", kid, *more], env=env)
    assert done.exit_code == 0, done.output
    return done.stderr


def test_revoking_the_signing_key_switches_a_server_within_the_interval(tmp_path: Path) -> None:
    env = _initialised(tmp_path)
    first = _ring(tmp_path).signing_key().kid
    compromised = _rotate(env, 0).kid  # signing now; the first key retires
    signer = _signer(env)
    assert _kid(signer) == compromised  # this worker has just rechecked the ring: the worst case

    message = _revoke(env, compromised)
    ended = time.monotonic()
    revoked = REVOKED.search(message)
    assert revoked is not None, message
    assert revoked[1] == compromised
    assert revoked[4] == f"{RING_CHECK_INTERVAL_S:g}"
    assert RESTART.format(kid=compromised) in " ".join(message.split())
    ring = _ring(tmp_path)
    fresh = ring.signing_key().kid
    assert revoked[2] == f"created key {fresh}: it signs now"
    assert {key.kid for key in ring.published_keys()} == {first, fresh}
    bundle = tmp_path / "data" / "registry-bundle.pem"
    assert _bundle_kids(bundle, ring) == {key.kid for key in ring.published_keys()}
    assert fresh in _bundle_kids(bundle, ring)
    # Both clocks are this process's: the bound is elapsed time, not work done.
    while time.monotonic() < ended + RING_CHECK_INTERVAL_S:
        assert _kid(signer) in {compromised, fresh}
        time.sleep(DEFAULT_POLL_S)
    assert _kid(signer) == fresh
    assert time.time() >= datetime.fromisoformat(revoked[3]).timestamp()


def test_revoking_the_only_key_creates_one_and_says_so(tmp_path: Path) -> None:
    env = _initialised(tmp_path)
    only = _ring(tmp_path).signing_key().kid
    copy = tmp_path / "registry" / "fleet-bundle.pem"
    copy.parent.mkdir()
    message = _revoke(env, only, "--bundle", str(copy))
    ring = _ring(tmp_path)
    fresh = ring.signing_key().kid
    assert [e.key.kid for e in ring.entries] == [fresh] and fresh != only
    words = " ".join(message.split())
    assert f"created key {fresh} (it was the only key): it signs now" in words
    assert f"and refuse those of {fresh}" in words
    assert str(copy) in words
    assert _bundle_kids(copy, ring) == {fresh}
    assert copy.stat().st_mode & 0o777 == 0o644  # readable by a registry of another user
    assert _bundle_kids(tmp_path / "data" / "registry-bundle.pem", ring) == {fresh}


def test_revoking_a_key_that_no_longer_signs_leaves_the_signer(tmp_path: Path) -> None:
    env = _initialised(tmp_path)
    old = _ring(tmp_path).signing_key().kid
    new = _rotate(env, 0).kid
    message = _revoke(env, old)
    assert f"key {new} goes on signing" in message
    assert "refuse those of" not in message
    assert [e.key.kid for e in _ring(tmp_path).entries] == [new]


@pytest.mark.parametrize("kid", ["NOPE", ""])
def test_revoking_an_unknown_key_names_the_known_ones_and_changes_nothing(
    tmp_path: Path, kid: str
) -> None:
    env = _initialised(tmp_path)
    _rotate(env, 300)
    files = {p: p.read_bytes() for p in [tmp_path / "data" / "registry-bundle.pem"]}
    store = _store(env)
    version = store.stamp()
    done = CliRunner().invoke(cli, ["keys", "revoke", "--kid", kid], env=env)
    assert done.exit_code != 0
    assert isinstance(done.exception, ValidationError), done.output
    assert done.exception.code == "UnknownKey"
    assert repr(kid) in done.exception.message
    for entry in _ring(tmp_path).entries:
        assert entry.key.kid in done.exception.message
    assert {p: p.read_bytes() for p in files} == files
    assert store.stamp() == version  # the ring's row was not rewritten


def test_the_revoke_help_says_to_restart_the_registries() -> None:
    shown = CliRunner().invoke(cli, ["keys", "revoke", "--help"])
    assert shown.exit_code == 0
    words = " ".join(shown.output.split())
    assert "restart every registry at once" in words
    assert "docs/runbook-signing-key-compromise.md" in "".join(words.split())  # may wrap at a -
    assert (Path(__file__).parents[2] / "docs" / "runbook-signing-key-compromise.md").is_file()


def test_rotations_and_revocations_are_kept_in_the_audit_log(tmp_path: Path) -> None:
    from sqlmodel import col, select

    from fleet.cli.host import build_services
    from fleet.db.models import AuditEvent

    env = _initialised(tmp_path)
    rotated = _rotate(env, 0).kid
    _revoke(env, rotated)
    services = build_services(load_settings(environ={k: v for k, v in env.items() if v}))
    fresh = services.signing.ring.signing_key().kid
    with services.ctx.db.session() as s:
        events = s.exec(
            select(AuditEvent)
            .where(col(AuditEvent.action).startswith("keys."))
            .order_by(col(AuditEvent.id))
        ).all()
    assert [(e.actor, e.action, e.target) for e in events] == [
        ("cli:server-host", "keys.rotate", rotated),
        ("cli:server-host", "keys.revoke", rotated),
    ]
    assert fresh in events[1].detail
