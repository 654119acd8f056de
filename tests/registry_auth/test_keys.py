from __future__ import annotations

import base64
import hashlib
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.domain.errors import ValidationError
from fleet.registry_auth.keys import (
    CERTIFICATE_BACKDATE,
    SigningKey,
    generate_signing_key,
    libtrust_key_id,
)

# A published libtrust vector: the EC fixture of realityone/libtrust-py (tests/fixtures/
# ec-public.pem) and the key id its tests expect, which Docker's Go libtrust also computes.
LIBTRUST_VECTOR_PEM = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4pBqYlc5IU5pJh5AOvijtEccStyJ
u0dSAiz4OlDGGFk5PvSlSh+wqUcSyp1ZRSP5kX7Pluof72g5MniaoFrLKg==
-----END PUBLIC KEY-----
"""
LIBTRUST_VECTOR_KID = "UEV2:PPF2:4DMU:WZYF:WOWU:677P:B7XU:SGFA:BMUG:NCTC:R7CL:XFKZ"
# DER SubjectPublicKeyInfo of a P-256 key, up to the uncompressed point marker (RFC 5480).
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200" + "04")


def kid_from_coordinates(x: int, y: int) -> str:
    """The libtrust key id rebuilt from scratch: hand-made SPKI, hash, base32, groups."""
    spki = P256_SPKI_PREFIX + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    encoded = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
    return ":".join(textwrap.wrap(encoded, 4))


def test_libtrust_key_id_matches_the_published_vector() -> None:
    public_key = serialization.load_pem_public_key(LIBTRUST_VECTOR_PEM)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert libtrust_key_id(public_key) == LIBTRUST_VECTOR_KID
    numbers = public_key.public_numbers()
    assert kid_from_coordinates(numbers.x, numbers.y) == LIBTRUST_VECTOR_KID


def test_libtrust_key_id_agrees_with_an_independent_derivation() -> None:
    for _ in range(5):
        key = generate_signing_key()
        numbers = key.public_key.public_numbers()
        assert key.kid == kid_from_coordinates(numbers.x, numbers.y)
        groups = key.kid.split(":")
        assert len(groups) == 12 and all(len(g) == 4 for g in groups)


def test_certificate_is_self_signed_for_the_key_and_valid_now() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    key = generate_signing_key(now)
    cert = key.certificate
    assert cert.public_key() == key.public_key
    assert cert.issuer == cert.subject
    (common_name,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert common_name.value == key.kid
    cert.verify_directly_issued_by(cert)
    assert cert.not_valid_before_utc == now - CERTIFICATE_BACKDATE
    assert cert.not_valid_after_utc > now + timedelta(days=365)


def test_x5c_is_the_standard_base64_der_certificate() -> None:
    key = generate_signing_key()
    (der_b64,) = key.x5c
    assert x509.load_der_x509_certificate(base64.b64decode(der_b64)) == key.certificate


def test_jwk_describes_the_public_key() -> None:
    key = generate_signing_key()
    jwk = key.jwk()
    numbers = key.public_key.public_numbers()

    def coordinate(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    assert {k: jwk[k] for k in ("kty", "crv", "use", "alg", "kid")} == {
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "alg": "ES256",
        "kid": key.kid,
    }
    assert (coordinate(jwk["x"]), coordinate(jwk["y"])) == (numbers.x, numbers.y)
    assert "=" not in jwk["x"] + jwk["y"]


def test_pem_round_trip_keeps_the_key() -> None:
    key = generate_signing_key()
    again = SigningKey.from_pem(key.private_key_pem(), key.certificate_pem())
    assert again.kid == key.kid
    assert again.certificate == key.certificate


def test_a_certificate_of_another_key_is_refused() -> None:
    one, other = generate_signing_key(), generate_signing_key()
    with pytest.raises(ValidationError, match="does not belong"):
        SigningKey(one.private_key, other.certificate)


def test_only_p256_keys_sign() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValidationError, match="P-256"):
        SigningKey(p384, generate_signing_key().certificate)
