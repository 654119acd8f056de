"""SigningService.revoke: the key leaves the ring and the bundle at once, and every worker
sharing the ring refuses its refresh tokens from its next request. The ring is the database's
(a fresh SQLite file or PostgreSQL schema per test), as every server keeps it."""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from fleet.bootstrap import initialise
from fleet.domain.errors import ValidationError
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services.shared_keys import DatabaseRingStore, SharedKeys
from fleet.services.signing import RefreshClaims, SigningService
from tests.conftest import make_settings
from tests.support.postgres import fresh_schema

CLAIMS = RefreshClaims(token="MyToken", slot="password1", fingerprint="f" * 32)


Worker = Callable[[], SigningService]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Worker]:
    """``worker()``: one worker of a server, its own ring object on the shared database."""
    with contextlib.ExitStack() as stack:
        url = ""
        if request.param == "postgresql":
            url = stack.enter_context(fresh_schema("fleet_signing"))
        settings = make_settings(tmp_path / "data", url, key_publish_delay=0)
        services = initialise(settings)
        stack.callback(services.close)
        store = DatabaseRingStore(SharedKeys.of(services.ctx))
        yield lambda: SigningService.open(settings, store)


def _bundle(service: SigningService) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(service.settings.registry_bundle_file.read_bytes())


def test_revoking_the_signing_key_replaces_it_in_the_ring_and_the_bundle(worker: Worker) -> None:
    operator = worker()
    operator.write_bundle()
    compromised = operator.ring.signing_key()
    before = time.time()
    revocation = operator.revoke(compromised.kid)
    assert revocation.kid == compromised.kid
    assert revocation.replacement == revocation.signing == operator.ring.signing_key().kid
    assert revocation.signing != compromised.kid
    assert before + RING_CHECK_INTERVAL_S <= revocation.everywhere_from
    assert revocation.everywhere_from <= time.time() + RING_CHECK_INTERVAL_S
    assert _bundle(operator) == [operator.ring.signing_key().certificate]
    mode = stat.S_IMODE(operator.settings.registry_bundle_file.stat().st_mode)
    assert mode == 0o600  # in the private data directory, like rotate() writes it
    assert [key["kid"] for key in operator.jwks()["keys"]] == [revocation.signing]


def test_revoking_a_key_that_no_longer_signs_keeps_the_signer(worker: Worker) -> None:
    operator = worker()
    old = operator.ring.signing_key().kid
    new = operator.rotate().kid
    revocation = operator.revoke(old)
    assert (revocation.replacement, revocation.signing) == (None, new)
    assert [key["kid"] for key in operator.jwks()["keys"]] == [new]


def test_another_worker_refuses_the_revoked_keys_refresh_tokens_at_once(worker: Worker) -> None:
    signer = worker()
    old = signer.refresh_token(CLAIMS, None)
    rotated_out = signer.ring.signing_key().kid
    signer.rotate()  # the old key retires: its refresh tokens stay good ...
    time.sleep(RING_CHECK_INTERVAL_S)
    current = signer.refresh_token(CLAIMS, None)
    compromised = jwt.get_unverified_header(current)["kid"]
    assert compromised != rotated_out
    assert signer.read_refresh_token(old) == signer.read_refresh_token(current) == CLAIMS

    worker().revoke(compromised)  # the operator, in another process
    assert signer.read_refresh_token(current) is None  # ... a revoked key's are not
    assert signer.read_refresh_token(old) == CLAIMS


def test_revoking_an_unknown_key_is_refused_and_changes_nothing(worker: Worker) -> None:
    operator = worker()
    operator.write_bundle()
    bundle = operator.settings.registry_bundle_file.read_bytes()
    entries = operator.ring.entries
    with pytest.raises(ValidationError) as caught:
        operator.revoke("NOPE")
    assert caught.value.code == "UnknownKey"
    assert entries[0].key.kid in caught.value.message
    assert operator.settings.registry_bundle_file.read_bytes() == bundle
    assert worker().ring.entries == entries
