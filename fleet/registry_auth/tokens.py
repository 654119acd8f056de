"""Mint the JWT that a Distribution registry accepts as a Bearer token.

Distribution 2.8 checks ``iss`` (its ``issuer``), ``aud`` (its ``service``; a single string,
2.8 cannot read a list), ``exp`` and ``nbf`` with :data:`REGISTRY_LEEWAY` of clock skew, the
ES256 signature, and then the ``access`` claim against the request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from fleet.domain.errors import ValidationError

if TYPE_CHECKING:
    from fleet.registry_auth.keys import SigningKey

DEFAULT_TOKEN_LIFETIME = 300
MIN_TOKEN_LIFETIME = 60
# A device group's JWT lifetime: short by default, so a disabled device's access ends soon.
DEFAULT_DEVICE_TOKEN_LIFETIME = 60
MAX_TOKEN_LIFETIME = 3600
REGISTRY_LEEWAY = 60  # Distribution's token.Leeway, added to exp and taken from nbf
JWT_ALGORITHM = "ES256"
JTI_BYTES = 18
# The largest JWT minted: MAX_SCOPES entries of the longest names fit well below it.
MAX_TOKEN_BYTES = 32 * 1024
ES256_COORDINATE_BYTES = 32


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# The digest is taken with hashlib and handed over ready: a quarter less time per signature
# than letting the signer hash, and one algorithm object for every signature.
_ES256 = ECDSA(Prehashed(SHA256()))
# One encoder for every token: json.dumps() with separators builds a new one per call.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
_header_segments: dict[str, bytes] = {}


def _header_segment(key: SigningKey) -> bytes:
    """The encoded JWS header of a key, computed once: its ``x5c`` is most of the token."""
    segment = _header_segments.get(key.kid)
    if segment is None:
        header = {"alg": JWT_ALGORITHM, "typ": "JWT", "kid": key.kid, "x5c": key.x5c}
        segment = _b64(compact_json(header).encode())
        _header_segments[key.kid] = segment
    return segment


def _sign(claims: dict[str, object], key: SigningKey) -> str:
    """Compact JWS, ES256 (RFC 7515/7518): the signature is r || s, 32 bytes each."""
    body = _b64(compact_json(claims).encode())
    signing_input = _header_segment(key) + b"." + body
    digest = hashlib.sha256(signing_input).digest()
    r, s = decode_dss_signature(key.private_key.sign(digest, _ES256))
    signature = r.to_bytes(ES256_COORDINATE_BYTES, "big") + s.to_bytes(
        ES256_COORDINATE_BYTES, "big"
    )
    return (signing_input + b"." + _b64(signature)).decode("ascii")


@functools.lru_cache(maxsize=1)
def _rfc3339(second: int) -> str:
    """``issued_at`` for a whole second, formatted once per second rather than per token."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MintedToken(NamedTuple):
    """What the token endpoint returns: the JWT, ``expires_in`` seconds and ``issued_at``
    (RFC 3339, as the Docker token response wants it)."""

    token: str
    expires_in: int
    issued_at: str


def mint(
    issuer: str,
    audience: str,
    subject: str,
    access: list[dict[str, object]],
    key: SigningKey,
    lifetime: int = DEFAULT_TOKEN_LIFETIME,
    now: float | None = None,
) -> MintedToken:
    """Sign a token for ``subject`` carrying ``access``; header ``kid`` and ``x5c`` name the key.

    Raises :class:`ValidationError` if ``lifetime`` is below :data:`MIN_TOKEN_LIFETIME`, or
    if the token would be longer than :data:`MAX_TOKEN_BYTES`.
    """
    if lifetime < MIN_TOKEN_LIFETIME:
        raise ValidationError(
            f"token lifetime {lifetime} s is below the minimum of {MIN_TOKEN_LIFETIME} s",
            code="InvalidTokenLifetime",
        )
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + lifetime,
        "nbf": issued,
        "iat": issued,
        "jti": secrets.token_urlsafe(JTI_BYTES),
        "access": access,
    }
    token = _sign(claims, key)
    if len(token) > MAX_TOKEN_BYTES:
        raise ValidationError(
            f"the token would be {len(token)} bytes, over the limit of {MAX_TOKEN_BYTES}; "
            "ask for fewer scopes",
            code="TokenTooLarge",
        )
    return MintedToken(token, lifetime, _rfc3339(issued))
