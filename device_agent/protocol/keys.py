"""Public keys on the wire: base64 (standard alphabet, padded) of their 32 raw bytes, as the
enrollment request sends the device's keys and its answer the server's signing key. The private
key files stay with the device (``device_agent.state.keys``)."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RAW_KEY_BYTES = 32

PublicKey = X25519PublicKey | Ed25519PublicKey


class InvalidPublicKey(ValueError):
    """Text that is not the base64 of a 32-byte public key."""


def public_key_b64(key: PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def _raw_from_b64(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidPublicKey("public key is not base64") from None
    if len(raw) != RAW_KEY_BYTES:
        raise InvalidPublicKey(f"public key must be {RAW_KEY_BYTES} raw bytes")
    return raw


def x25519_public_from_b64(text: str) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(_raw_from_b64(text))


def ed25519_public_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw_from_b64(text))
