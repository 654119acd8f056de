"""SigningService.revoke: the key leaves the ring and the bundle at once, and every worker
sharing the ring refuses its refresh tokens from its next request. Keys live on disk only, so
no database is needed."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from fleet.domain.errors import ValidationError
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services.signing import RefreshClaims, SigningService
from tests.conftest import make_settings

CLAIMS = RefreshClaims(token="MyToken", slot="password1", fingerprint="f" * 32)


def _worker(tmp_path: Path) -> SigningService:
    """One worker of a server: its own ring object on the shared data directory."""
    return SigningService.open(make_settings(tmp_path / "data", key_publish_delay=0))


def _bundle(service: SigningService) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(service.settings.registry_bundle_file.read_bytes())


def test_revoking_the_signing_key_replaces_it_in_the_ring_and_the_bundle(tmp_path: Path) -> None:
    operator = _worker(tmp_path)
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


def test_revoking_a_key_that_no_longer_signs_keeps_the_signer(tmp_path: Path) -> None:
    operator = _worker(tmp_path)
    old = operator.ring.signing_key().kid
    new = operator.rotate().kid
    revocation = operator.revoke(old)
    assert (revocation.replacement, revocation.signing) == (None, new)
    assert [key["kid"] for key in operator.jwks()["keys"]] == [new]


def test_another_worker_refuses_the_revoked_keys_refresh_tokens_at_once(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    old = worker.refresh_token(CLAIMS, None)
    rotated_out = worker.ring.signing_key().kid
    worker.rotate()  # the old key retires: its refresh tokens stay good ...
    time.sleep(RING_CHECK_INTERVAL_S)
    current = worker.refresh_token(CLAIMS, None)
    compromised = jwt.get_unverified_header(current)["kid"]
    assert compromised != rotated_out
    assert worker.read_refresh_token(old) == worker.read_refresh_token(current) == CLAIMS

    _worker(tmp_path).revoke(compromised)  # the operator, in another process
    assert worker.read_refresh_token(current) is None  # ... a revoked key's are not
    assert worker.read_refresh_token(old) == CLAIMS


def test_revoking_an_unknown_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    operator = _worker(tmp_path)
    operator.write_bundle()
    bundle = operator.settings.registry_bundle_file.read_bytes()
    entries = operator.ring.entries
    with pytest.raises(ValidationError) as caught:
        operator.revoke("NOPE")
    assert caught.value.code == "UnknownKey"
    assert entries[0].key.kid in caught.value.message
    assert operator.settings.registry_bundle_file.read_bytes() == bundle
    assert _worker(tmp_path).ring.entries == entries
