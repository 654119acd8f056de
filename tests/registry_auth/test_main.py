from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from fleet.registry_auth.__main__ import main
from fleet.registry_auth.keyring import KeyRing


def test_bundle_then_rotate_writes_the_published_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, bundle = tmp_path / "keys", tmp_path / "bundle.pem"
    assert main(["bundle", "--keys", str(keys), "--bundle", str(bundle)]) == 0
    assert len(x509.load_pem_x509_certificates(bundle.read_bytes())) == 1
    assert main(["rotate", "--keys", str(keys), "--bundle", str(bundle)]) == 0
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    ring = KeyRing.open(keys)
    assert certificates == [key.certificate for key in ring.published_keys()]
    assert len(certificates) == 2
    printed = capsys.readouterr().out
    assert all(key.kid in printed for key in ring.published_keys())
