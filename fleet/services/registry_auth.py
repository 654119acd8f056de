"""Checking a token's name and password for the registry token endpoint.

This is on every pull's path. The service asks a
:class:`~fleet.services.credential_cache.CredentialSource` for the token's password slots
(``FLEET_CREDENTIAL_CACHE``: kept per process and dropped whole as soon as any credential may
have changed anywhere, or read from the database every time) and proves the offered password
against them. A password that does not prove against kept slots is checked against the database
again, so a new password works at once, and an unknown name costs the same work as a wrong
password (one look-up, two comparisons).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime

from fleet.domain.explain import password_is_live
from fleet.services.context import ServiceContext
from fleet.services.credential_cache import CredentialSource, Principal, Slots, credentials_for
from fleet.services.signing import RefreshClaims, credential_fingerprint

__all__ = ["Principal", "RegistryAuthService"]

# Compared against when the name is unknown, so that costs the same work as a wrong password.
_NO_HASH = "0" * 64


class RegistryAuthService:
    def __init__(self, ctx: ServiceContext, credentials: CredentialSource | None = None) -> None:
        """``credentials`` defaults to the source ``ctx.settings.credential_cache`` names."""
        self.ctx = ctx
        self._credentials = (
            credentials
            if credentials is not None
            else credentials_for(ctx.db.engine, ctx.settings.credential_cache)
        )

    @property
    def credentials(self) -> CredentialSource:
        """Where this service finds a token's password slots."""
        return self._credentials

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The principal when ``password`` is a live password of an enabled token."""
        offered = self.ctx.hasher.hash(password)
        return self._match(name, lambda slot, stored: hmac.compare_digest(offered, stored))

    def authenticate_refresh(self, claims: RefreshClaims) -> Principal | None:
        """The principal when the refresh token's password is still the slot's live one."""
        return self._match(
            claims.token,
            lambda slot, stored: (
                slot == claims.slot
                and hmac.compare_digest(credential_fingerprint(stored), claims.fingerprint)
            ),
        )

    def _match(self, name: str, proves: Callable[[str, str], bool]) -> Principal | None:
        now = self.ctx.clock()
        found = self._credentials.find(name)
        principal = _proved(found.slots, proves, now)
        if principal is None and found.kept:
            principal = _proved(self._credentials.read(name), proves, now)
        return principal


def _proved(slots: Slots, proves: Callable[[str, str], bool], now: datetime) -> Principal | None:
    """The principal of the live slot ``proves``; both slots are always tried, and a missing
    one is tried against a hash nothing matches, so the work does not tell which exist."""
    matched = None
    for kept in slots:
        principal = kept.principal
        live = password_is_live(kept.enabled, principal.expiry, now)
        if proves(principal.slot, kept.stored) and live and matched is None:
            matched = principal
    for _ in range(2 - len(slots)):
        proves("", _NO_HASH)
    return matched
