"""The sealed, signed envelope that carries credentials and commands from the server to one
device. The server seals with ``seal``; the agent opens with ``open_envelope``. This module is
the only definition of the wire format and imports nothing but the stdlib and ``cryptography``.

Wire format, version 1 (all integers unsigned big-endian; ``||`` is concatenation)::

    envelope  = header || ciphertext || signature
    header    = magic       4 bytes   b"FLEV"
                format      1 byte    1
                kind        1 byte    1 = credentials, 2 = command
                version     8 bytes   per-device message version, 1 .. 2**63-1, only grows
                created     8 bytes   creation time, whole seconds since the Unix epoch (UTC),
                                      at most 253402300799 (9999-12-31T23:59:59Z)
                id_len      1 byte    length of device_id, 3 .. 46
                device_id   id_len    ASCII, a valid device id (``device_id.py``: letters,
                                      digits and hyphens, starting with a letter or digit)
                ephemeral   32 bytes  the sender's one-time X25519 public key
                nonce       12 bytes  random
    ciphertext              >= 16     ChaCha20-Poly1305(key, nonce, plaintext, aad = header),
                                      the 16-byte tag last; it runs up to the signature
    signature               64 bytes  Ed25519 by the server's key over
                                      b"fleet/v1 envelope signature\\x00" || header || ciphertext

    key       = HKDF-SHA256(ikm  = X25519(ephemeral private, device public),
                            salt = ephemeral || device public key (32 + 32 raw bytes),
                            info = b"fleet/v1 envelope key\\x00" || format || id_len || device_id,
                            length = 32)
    plaintext = UTF-8 JSON object, keys sorted, separators "," and ":", no NaN/Infinity;
                its "kind" member equals the header's kind name ("credentials" or "command").

The whole envelope is at most 65536 bytes, and nothing may follow the signature: the layout
leaves no byte unaccounted for, so every byte is covered by the signature and every change is
refused. A credentials payload holds ``login_server``, ``username``, ``password``, ``slot`` and
``expiry`` (read by ``device_agent.state.credentials``); a command payload holds ``command``
("wipe", "pull", ...) and its arguments.

``open_envelope`` raises one ``EnvelopeError`` subclass per reason (``errors``, which
gives the order of the checks). ChaCha20-Poly1305 rather than AES-GCM because many Raspberry Pi
class CPUs (the Pi 3 and 4 among them) have no AES instructions.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from device_agent.protocol.device_id import is_valid_device_id
from device_agent.protocol.errors import (  # re-exported: part of this module's interface
    BadSignature,
    DecryptFailed,
    Malformed,
    StaleVersion,
    TooLarge,
    UnsupportedFormat,
    WrongDevice,
)
from device_agent.protocol.errors import EnvelopeError as EnvelopeError

MAGIC = b"FLEV"
FORMAT_VERSION = 1
MAX_ENVELOPE_BYTES = 65536
MAX_VERSION = 2**63 - 1
MAX_CREATED = 253402300799
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
SIGNATURE_BYTES = 64
SIGNATURE_CONTEXT = b"fleet/v1 envelope signature\x00"
KEY_INFO_LABEL = b"fleet/v1 envelope key\x00"

_FIXED = struct.Struct(">4sBBQQB")  # magic, format, kind, version, created, id_len
MIN_ENVELOPE_BYTES = _FIXED.size + 1 + KEY_BYTES + NONCE_BYTES + TAG_BYTES + SIGNATURE_BYTES


class Kind(StrEnum):
    CREDENTIALS = "credentials"
    COMMAND = "command"


_KIND_CODES: dict[Kind, int] = {Kind.CREDENTIALS: 1, Kind.COMMAND: 2}
_KINDS_BY_CODE: dict[int, Kind] = {code: kind for kind, code in _KIND_CODES.items()}


@dataclass(frozen=True)
class Opened:
    """An envelope that passed every check. ``payload`` may hold a password: never logged."""

    device_id: str
    version: int
    kind: Kind
    created_at: datetime
    payload: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class _Header:
    kind: Kind
    version: int
    created: int
    device_id: str
    ephemeral: bytes
    nonce: bytes
    length: int


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive_key(shared: bytes, device_id: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    info = KEY_INFO_LABEL + bytes([FORMAT_VERSION, len(device_id)]) + device_id
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ephemeral + recipient, info=info
    ).derive(shared)


def _canonical_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def seal(
    payload: Mapping[str, Any],
    *,
    device_id: str,
    version: int,
    kind: Kind | str,
    device_public_key: X25519PublicKey,
    server_private_key: Ed25519PrivateKey,
    now: datetime,
) -> bytes:
    """Encrypt ``payload`` to one device and sign the result. ``payload["kind"]``, if present,
    must equal ``kind``; it is added otherwise. Raises ``ValueError`` on bad arguments."""
    kind = Kind(kind)
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ValueError(f"version must be an integer from 1 to {MAX_VERSION}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    created = int(now.timestamp())
    if not 0 <= created <= MAX_CREATED:
        raise ValueError("now is outside the representable range")
    body = dict(payload)
    if body.setdefault("kind", kind.value) != kind.value:
        raise ValueError(f"payload kind {body['kind']!r} differs from envelope kind {kind.value!r}")
    plaintext = _canonical_json(body)

    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    id_bytes = device_id.encode("ascii")
    nonce = os.urandom(NONCE_BYTES)
    header = (
        _FIXED.pack(MAGIC, FORMAT_VERSION, _KIND_CODES[kind], version, created, len(id_bytes))
        + id_bytes
        + ephemeral_raw
        + nonce
    )
    key = _derive_key(
        ephemeral.exchange(device_public_key), id_bytes, ephemeral_raw, _raw(device_public_key)
    )
    signed = header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)
    envelope = signed + server_private_key.sign(SIGNATURE_CONTEXT + signed)
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise ValueError(f"sealed envelope is {len(envelope)} bytes, over {MAX_ENVELOPE_BYTES}")
    return envelope


def _parse_header(signed: bytes) -> _Header:
    _magic, _format, kind_code, version, created, id_len = _FIXED.unpack_from(signed)
    kind = _KINDS_BY_CODE.get(kind_code)
    if kind is None:
        raise Malformed(f"unknown kind {kind_code}")
    if not 1 <= version <= MAX_VERSION:
        raise Malformed("version out of range")
    if created > MAX_CREATED:
        raise Malformed("creation time out of range")
    length = _FIXED.size + id_len + KEY_BYTES + NONCE_BYTES
    if len(signed) < length + TAG_BYTES:
        raise Malformed("truncated")
    try:
        device_id = signed[_FIXED.size : _FIXED.size + id_len].decode("ascii")
    except UnicodeDecodeError:
        raise Malformed("device id is not ASCII") from None
    if not is_valid_device_id(device_id):
        raise Malformed("invalid device id")
    ephemeral_at = _FIXED.size + id_len
    return _Header(
        kind=kind,
        version=version,
        created=created,
        device_id=device_id,
        ephemeral=signed[ephemeral_at : ephemeral_at + KEY_BYTES],
        nonce=signed[ephemeral_at + KEY_BYTES : length],
        length=length,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise Malformed("duplicate key in payload")
    return result


def _reject_constant(name: str) -> None:
    raise Malformed(f"{name} in payload")


def _parse_payload(plaintext: bytes, kind: Kind) -> dict[str, Any]:
    try:
        payload = json.loads(
            plaintext.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed("payload is not UTF-8 JSON") from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind.value:
        raise Malformed("payload is not an object of the envelope's kind")
    return payload


def claimed_version(data: bytes) -> int | None:
    """The version an envelope's header claims, unverified (for a refusal's report); None when
    the bytes are not even a header of this format."""
    if not isinstance(data, bytes) or len(data) < _FIXED.size or data[:4] != MAGIC:
        return None
    return int(_FIXED.unpack_from(data)[3])


def open_envelope(
    data: bytes,
    *,
    device_id: str,
    device_private_key: X25519PrivateKey,
    server_public_key: Ed25519PublicKey,
    last_version: int,
) -> Opened:
    """Verify, check and decrypt one envelope for ``device_id``, accepting only versions above
    ``last_version`` (0 when the device holds nothing). Raises an ``EnvelopeError`` subclass."""
    if not isinstance(data, bytes):
        raise Malformed("an envelope is bytes")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise TooLarge(f"{len(data)} bytes, over {MAX_ENVELOPE_BYTES}")
    if len(data) < MIN_ENVELOPE_BYTES:
        raise Malformed("truncated")
    if data[:4] != MAGIC:
        raise Malformed("not a fleet envelope")
    if data[4] != FORMAT_VERSION:
        raise UnsupportedFormat(f"format {data[4]}")
    signed, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    try:
        server_public_key.verify(signature, SIGNATURE_CONTEXT + signed)
    except InvalidSignature:
        raise BadSignature("signature does not verify with the server's key") from None

    header = _parse_header(signed)
    if header.device_id != device_id:
        raise WrongDevice(f"addressed to {header.device_id!r}, not {device_id!r}")
    if header.version <= last_version:
        raise StaleVersion(f"version {header.version} is not newer than {last_version}")
    recipient = _raw(device_private_key.public_key())
    try:
        shared = device_private_key.exchange(X25519PublicKey.from_public_bytes(header.ephemeral))
        key = _derive_key(shared, device_id.encode("ascii"), header.ephemeral, recipient)
        plaintext = ChaCha20Poly1305(key).decrypt(
            header.nonce, signed[header.length :], signed[: header.length]
        )
    except (InvalidTag, ValueError):
        raise DecryptFailed("not sealed to this device's key") from None
    return Opened(
        device_id=header.device_id,
        version=header.version,
        kind=header.kind,
        created_at=datetime.fromtimestamp(header.created, UTC),
        payload=_parse_payload(plaintext, header.kind),
    )
