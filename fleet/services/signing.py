"""Signing registry tokens and refresh tokens with the key ring, for every worker.

The ring is the deployment's, kept in the database (:mod:`fleet.services.shared_keys`): every
server signs with the same keys. Each process rereads it at most once per
``RING_CHECK_INTERVAL_S`` to sign (one query for its version, none per token request; a
refresh-token grant and the JWKS reread it on every request, so a revoked key is refused at
once), and when it changed rewrites its own registry bundle, so the bundle in every server's
data directory follows a rotation or revocation made by any of them within that interval.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from fleet.config import Settings
from fleet.data_dir import FILE_MODE as PRIVATE_MODE
from fleet.registry_auth.keyring import KeyRing, RingStore
from fleet.registry_auth.keys import SigningKey
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.registry_auth.tokens import JWT_ALGORITHM, MAX_TOKEN_LIFETIME, MintedToken, mint

log = logging.getLogger(__name__)
REFRESH_AUDIENCE_SUFFIX = "#refresh"
REFRESH_LIFETIME = 90 * 24 * 3600  # at most; never past the password's own expiry


def credential_fingerprint(secret_hash: str) -> str:
    """Names one stored password without revealing anything about it."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Rotation:
    """A key just added to the ring, and when every server sharing the ring signs with it."""

    kid: str
    signing_from: float
    everywhere_from: float


@dataclass(frozen=True, slots=True)
class Revocation:
    """A key just dropped from the ring, what signs now, and when every server has stopped
    signing with the dropped key."""

    kid: str
    replacement: str | None  # the fresh key made because the revoked one was signing
    signing: str
    everywhere_from: float


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    token: str
    slot: str
    fingerprint: str


class SigningService:
    def __init__(self, settings: Settings, ring: KeyRing) -> None:
        self.settings = settings
        self.ring = ring
        self._refreshed = float("-inf")

    @classmethod
    def open(cls, settings: Settings, store: RingStore) -> SigningService:
        ring = KeyRing.open_store(
            store,
            # A replaced key stays published as long as any JWT it signed can live: the
            # longest lifetime a group or the setting may give.
            token_lifetime=MAX_TOKEN_LIFETIME,
            publish_delay=settings.key_publish_delay,
        )
        return cls(settings, ring)

    def _recheck(self) -> None:
        """Reread the ring if another process changed it, at most once per interval: signing
        (every token request) adds no query. A new key is published when it is written, so
        the lag never signs with an unpublished key."""
        if time.monotonic() - self._refreshed >= RING_CHECK_INTERVAL_S:
            self._recheck_now()

    def _recheck_now(self) -> None:
        """Reread the ring if another process changed it (one read of its version)."""
        self._refreshed = time.monotonic()
        if self.ring.refresh():
            try:
                self.write_bundle()
            except OSError:  # the request is answered all the same; the next change retries
                log.exception("cannot rewrite %s", self.settings.registry_bundle_file)

    def _key(self) -> SigningKey:
        self._recheck()
        return self.ring.signing_key()

    def registry_token(
        self, subject: str, access: list[dict[str, Any]], lifetime: int | None = None
    ) -> MintedToken:
        """A JWT living ``lifetime`` seconds (a device group's), else the setting's."""
        return mint(
            self.settings.token_issuer,
            self.settings.registry_service,
            subject,
            access,
            self._key(),
            lifetime=self.settings.token_lifetime if lifetime is None else lifetime,
        )

    def refresh_token(self, claims: RefreshClaims, password_expiry: float | None) -> str:
        now = int(time.time())
        exp = now + REFRESH_LIFETIME
        if password_expiry is not None:
            exp = min(exp, int(password_expiry))
        key = self._key()
        body = {
            "iss": self.settings.token_issuer,
            "aud": self.settings.registry_service + REFRESH_AUDIENCE_SUFFIX,
            "sub": claims.token,
            "slot": claims.slot,
            "pfp": claims.fingerprint,
            "iat": now,
            "exp": exp,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(body, key.private_key, algorithm=JWT_ALGORITHM, headers={"kid": key.kid})

    def read_refresh_token(self, value: str) -> RefreshClaims | None:
        """The claims of a refresh token this server signed and that is still valid."""
        try:
            kid = jwt.get_unverified_header(value).get("kid")
        except jwt.PyJWTError:
            return None
        self._recheck_now()  # a revoked key's refresh tokens are refused at once, everywhere
        key = next((k for k in self.ring.published_keys() if k.kid == kid), None)
        if key is None:
            return None
        try:
            body = jwt.decode(
                value,
                key.public_key,
                algorithms=[JWT_ALGORITHM],
                audience=self.settings.registry_service + REFRESH_AUDIENCE_SUFFIX,
                issuer=self.settings.token_issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        sub, slot, fp = body.get("sub"), body.get("slot"), body.get("pfp")
        if not all(isinstance(v, str) for v in (sub, slot, fp)):
            return None
        return RefreshClaims(token=sub, slot=slot, fingerprint=fp)

    def rotate(self) -> Rotation:
        """Add a key that signs after the ring's publish delay and write the bundle.

        Every server sharing the ring signs with it from ``everywhere_from``: its signing time,
        or ``RING_CHECK_INTERVAL_S`` after it was written if that is later, since a worker that
        rechecked the ring just before the write next rechecks that much later.
        """
        self.ring.rotate()
        written_at = time.time()
        newest = self.ring.entries[-1]
        self.write_bundle()
        return Rotation(
            kid=newest.key.kid,
            signing_from=newest.signing_from,
            everywhere_from=max(newest.signing_from, written_at + RING_CHECK_INTERVAL_S),
        )

    def revoke(self, kid: str) -> Revocation:
        """Drop key ``kid`` from the ring now and write the bundle without it.

        No server sharing the ring signs with it from ``everywhere_from``, ``RING_CHECK_INTERVAL_S``
        after the ring was written; its refresh tokens are refused by the next request anywhere,
        which rereads the ring's version. Registries accept its JWTs until they are restarted on
        the new bundle. An unknown ``kid`` is a ``ValidationError`` and changes nothing.
        """
        fresh = self.ring.revoke(kid)
        written_at = time.time()
        self.write_bundle()
        return Revocation(
            kid=kid,
            replacement=None if fresh is None else fresh.kid,
            signing=self.ring.signing_key().kid,
            everywhere_from=written_at + RING_CHECK_INTERVAL_S,
        )

    def jwks(self) -> dict[str, Any]:
        self._recheck_now()
        return self.ring.jwks()

    def write_bundle(self) -> None:
        # In the private data directory; `fleet keys bundle` writes a readable copy elsewhere.
        self.ring.write_bundle(self.settings.registry_bundle_file, mode=PRIVATE_MODE)
