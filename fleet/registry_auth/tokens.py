"""Mint the JWT that a Distribution registry accepts as a Bearer token.

Distribution 2.8 checks ``iss`` (its ``issuer``), ``aud`` (its ``service``; a single string,
2.8 cannot read a list), ``exp`` and ``nbf`` with :data:`REGISTRY_LEEWAY` of clock skew, the
ES256 signature, and then the ``access`` claim against the request.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

import jwt

from fleet.domain.errors import ValidationError

if TYPE_CHECKING:
    from fleet.registry_auth.keys import SigningKey

DEFAULT_TOKEN_LIFETIME = 300
MIN_TOKEN_LIFETIME = 60
REGISTRY_LEEWAY = 60  # Distribution's token.Leeway, added to exp and taken from nbf
JWT_ALGORITHM = "ES256"
JTI_BYTES = 18


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

    Raises :class:`ValidationError` if ``lifetime`` is below :data:`MIN_TOKEN_LIFETIME`.
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
    encoded = jwt.encode(
        claims,
        key.private_key,
        algorithm=JWT_ALGORITHM,
        headers={"kid": key.kid, "x5c": key.x5c},
    )
    issued_at = datetime.fromtimestamp(issued, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return MintedToken(encoded, lifetime, issued_at)
