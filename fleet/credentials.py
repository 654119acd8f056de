"""Generated secrets: recognisable, checksummed, and stored only as keyed hashes.

A secret looks like ``fltp_`` + 36 random base62 characters + a 6-character base62 CRC32 of
them, so secret scanners can spot a leaked one and a typo is caught before any look-up.
"""

from __future__ import annotations

import hmac
import secrets
import zlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 36  # 36 * log2(62) ~ 214 bits of entropy
CHECKSUM_CHARS = 6
PASSWORD_PREFIX = "fltp_"
API_KEY_PREFIX = "flta_"
ENROLLMENT_SECRET_PREFIX = "flte_"
ENROLLMENT_CODE_PREFIX = "fltc_"
MQTT_PASSWORD_PREFIX = "fltm_"
OPERATOR_PASSWORD_PREFIX = "flto_"
MIN_SECRET_KEY_BYTES = 32
HINT_CHARS = 4  # the last characters of a secret, shown to tell secrets apart


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_CHARS)


def generate_secret(prefix: str) -> str:
    body = "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))
    return f"{prefix}{body}{_checksum(body)}"


def looks_valid(secret: str, prefix: str) -> bool:
    """Shape and checksum only: cheap, and says nothing about whether it is in use."""
    if not secret.startswith(prefix) or len(secret) != len(prefix) + RANDOM_CHARS + CHECKSUM_CHARS:
        return False
    body = secret[len(prefix) : len(prefix) + RANDOM_CHARS]
    return hmac.compare_digest(secret[len(prefix) + RANDOM_CHARS :], _checksum(body))


class SecretHasher:
    """HMAC-SHA256 under a server-side key: right for high-entropy generated secrets."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"the secret key must be at least {MIN_SECRET_KEY_BYTES} bytes")
        self._key = key

    def hash(self, secret: str) -> str:
        return hmac.digest(self._key, secret.encode(), "sha256").hex()  # OpenSSL's one-shot

    def derive(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (the dashboard's session cookies), from this one."""
        return hmac.digest(self._key, f"fleet-derive:{purpose}".encode(), "sha256")

    def sealing_key(self, purpose: str) -> bytes:
        """A 256-bit encryption key for ``purpose`` (HKDF-SHA256 of the secret key)."""
        hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=f"fleet-seal:{purpose}".encode())
        return hkdf.derive(self._key)

    def matches(self, secret: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(secret), stored_hash)
