from __future__ import annotations

import base64

import jwt
import pytest
from cryptography import x509

from fleet.domain.errors import ValidationError
from fleet.registry_auth.keys import SigningKey, generate_signing_key
from fleet.registry_auth.tokens import (
    DEFAULT_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
    REGISTRY_LEEWAY,
    mint,
)

NOW = 1_900_000_000
ACCESS = [{"type": "repository", "name": "samples/hello-world", "actions": ["pull"]}]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key()


def decode_with_jwks(token: str, jwks: dict[str, object]) -> dict[str, object]:
    """Verify as a third party would: pick the JWKS key named by the header's kid.

    Times are checked in the tests themselves: NOW is a fixed moment, not the clock's."""
    header = jwt.get_unverified_header(token)
    signing_key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(
        token,
        signing_key,
        algorithms=["ES256"],
        audience="fleet-registry",
        issuer="fleet",
        leeway=REGISTRY_LEEWAY,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )


def test_token_claims_and_headers(key: SigningKey) -> None:
    minted = mint("fleet", "fleet-registry", "MyToken", ACCESS, key, now=NOW)
    header = jwt.get_unverified_header(minted.token)
    assert header["alg"] == "ES256"
    assert header["kid"] == key.kid
    assert header["x5c"] == key.x5c
    claims = decode_with_jwks(minted.token, {"keys": [key.jwk()]})
    assert claims["iss"] == "fleet"
    assert claims["sub"] == "MyToken"
    assert claims["aud"] == "fleet-registry"  # a string: Distribution 2.8 cannot read a list
    assert claims["iat"] == claims["nbf"] == NOW
    assert claims["exp"] == NOW + DEFAULT_TOKEN_LIFETIME
    assert claims["access"] == ACCESS
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert minted.expires_in == DEFAULT_TOKEN_LIFETIME
    assert minted.issued_at == "2030-03-17T17:46:40Z"


def test_token_verifies_with_the_certificate_in_x5c(key: SigningKey) -> None:
    minted = mint("fleet", "fleet-registry", "MyToken", ACCESS, key, lifetime=120)
    (der_b64,) = jwt.get_unverified_header(minted.token)["x5c"]
    certificate = x509.load_der_x509_certificate(base64.b64decode(der_b64))
    claims = jwt.decode(
        minted.token, certificate.public_key(), algorithms=["ES256"], audience="fleet-registry"
    )
    assert claims["exp"] - claims["iat"] == 120


def test_token_signed_by_another_key_fails_against_the_jwks(key: SigningKey) -> None:
    other = generate_signing_key()
    minted = mint("fleet", "fleet-registry", "MyToken", ACCESS, other, now=NOW)
    forged_header_jwks = {"keys": [key.jwk() | {"kid": other.kid}]}
    with pytest.raises(jwt.InvalidSignatureError):
        decode_with_jwks(minted.token, forged_header_jwks)


def test_each_token_has_its_own_jti(key: SigningKey) -> None:
    tokens = [mint("fleet", "svc", "sub", [], key, now=NOW).token for _ in range(20)]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 20


@pytest.mark.parametrize("lifetime", [MIN_TOKEN_LIFETIME - 1, 0, -300])
def test_lifetimes_below_the_minimum_are_refused(key: SigningKey, lifetime: int) -> None:
    with pytest.raises(ValidationError) as caught:
        mint("fleet", "svc", "sub", [], key, lifetime=lifetime, now=NOW)
    assert caught.value.code == "InvalidTokenLifetime"
    assert str(MIN_TOKEN_LIFETIME) in caught.value.message


def test_the_minimum_lifetime_itself_is_fine(key: SigningKey) -> None:
    assert mint("fleet", "svc", "sub", [], key, lifetime=MIN_TOKEN_LIFETIME).expires_in == 60
