"""The envelope: round trips, every refusal, and an independent implementation from the
module's docstring that must agree with ``seal`` and ``open_envelope`` byte for byte."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agent.protocol import envelope as env
from device_agent.protocol.envelope import (
    BadSignature,
    DecryptFailed,
    EnvelopeError,
    Kind,
    Malformed,
    StaleVersion,
    TooLarge,
    UnsupportedFormat,
    WrongDevice,
    open_envelope,
    seal,
)

NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
SERVER = Ed25519PrivateKey.generate()
DEVICE_A = X25519PrivateKey.generate()
DEVICE_B = X25519PrivateKey.generate()
CREDS = {
    "login_server": "registry.example:5000",
    "username": "device-a",
    "password": "s3cret-password-value",
    "slot": "password2",
    "expiry": "2026-04-01T00:00:00+00:00",
}


def sealed(
    payload: dict[str, Any] | None = None,
    *,
    device_id: str = "device-a",
    version: int = 5,
    kind: str = "credentials",
    recipient: X25519PrivateKey = DEVICE_A,
) -> bytes:
    return seal(
        CREDS if payload is None else payload,
        device_id=device_id,
        version=version,
        kind=kind,
        device_public_key=recipient.public_key(),
        server_private_key=SERVER,
        now=NOW,
    )


def opened(data: bytes, *, last_version: int = 4, **kw: Any) -> env.Opened:
    args: dict[str, Any] = {
        "device_id": "device-a",
        "device_private_key": DEVICE_A,
        "server_public_key": SERVER.public_key(),
        "last_version": last_version,
    }
    args.update(kw)
    return open_envelope(data, **args)


def raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- an independent implementation, written from the docstring alone ----------------------


def reference_seal(
    plaintext: bytes,
    *,
    kind_code: int = 1,
    version: int = 5,
    created: int = 1_772_366_405,
    device_id: bytes = b"device-a",
    fmt: int = 1,
    recipient: X25519PublicKey | None = None,
) -> bytes:
    recipient = recipient or DEVICE_A.public_key()
    eph = X25519PrivateKey.generate()
    eph_raw = raw(eph.public_key())
    nonce = bytes(range(12))
    header = (
        b"FLEV"
        + bytes([fmt, kind_code])
        + struct.pack(">QQ", version, created)
        + bytes([len(device_id)])
        + device_id
        + eph_raw
        + nonce
    )
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_raw + raw(recipient),
        info=b"fleet/v1 envelope key\x00" + bytes([fmt, len(device_id)]) + device_id,
    ).derive(eph.exchange(recipient))
    body = header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)
    return body + SERVER.sign(b"fleet/v1 envelope signature\x00" + body)


def reference_open(data: bytes, recipient: X25519PrivateKey = DEVICE_A) -> tuple[bytes, bytes]:
    """(header, plaintext) of an envelope, by the docstring's layout."""
    SERVER.public_key().verify(data[-64:], b"fleet/v1 envelope signature\x00" + data[:-64])
    id_len = data[22]
    device_id = data[23 : 23 + id_len]
    eph_raw = data[23 + id_len : 55 + id_len]
    nonce = data[55 + id_len : 67 + id_len]
    header = data[: 67 + id_len]
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_raw + raw(recipient.public_key()),
        info=b"fleet/v1 envelope key\x00" + bytes([data[4], id_len]) + device_id,
    ).derive(recipient.exchange(X25519PublicKey.from_public_bytes(eph_raw)))
    return header, ChaCha20Poly1305(key).decrypt(nonce, data[67 + id_len : -64], header)


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_seal_output_follows_the_documented_layout() -> None:
    data = sealed()
    header, plaintext = reference_open(data)
    assert header[:6] == b"FLEV\x01\x01"
    assert struct.unpack(">QQ", header[6:22]) == (5, int(NOW.timestamp()))
    assert header[22:31] == b"\x08device-a"
    assert plaintext == canonical({**CREDS, "kind": "credentials"})
    assert len(data) == len(header) + len(plaintext) + 16 + 64


def test_open_accepts_the_reference_implementation() -> None:
    result = opened(reference_seal(canonical({**CREDS, "kind": "credentials"})))
    assert result.payload == {**CREDS, "kind": "credentials"}
    assert result.created_at == datetime.fromtimestamp(1_772_366_405, UTC)


# --- round trips ---------------------------------------------------------------------------


def test_credentials_round_trip() -> None:
    result = opened(sealed())
    assert result.device_id == "device-a"
    assert result.version == 5
    assert result.kind is Kind.CREDENTIALS
    assert result.created_at == NOW.replace(microsecond=0)
    assert result.payload == {**CREDS, "kind": "credentials"}
    assert CREDS["password"] not in repr(result)


def test_command_round_trip() -> None:
    result = opened(sealed({"command": "pull", "images": ["a/b:1"]}, kind="command"))
    assert result.kind is Kind.COMMAND
    assert result.payload == {"kind": "command", "command": "pull", "images": ["a/b:1"]}


def test_each_seal_is_fresh() -> None:
    assert sealed() != sealed()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.dictionaries(st.text(max_size=20).filter(lambda k: k != "kind"), JSON, max_size=8),
    # Every id the one device-id rule allows (issue 14: no longer 1-128 with "." and "_").
    device_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{2,45}", fullmatch=True),
    version=st.integers(min_value=1, max_value=env.MAX_VERSION),
    kind=st.sampled_from(list(Kind)),
)
def test_round_trip_property(
    payload: dict[str, Any], device_id: str, version: int, kind: Kind
) -> None:
    data = sealed(payload, device_id=device_id, version=version, kind=kind)
    result = opened(data, device_id=device_id, last_version=version - 1)
    assert (result.device_id, result.version, result.kind) == (device_id, version, kind)
    assert result.payload == {**payload, "kind": kind.value}
    with pytest.raises(StaleVersion):
        opened(data, device_id=device_id, last_version=version)


# --- refusals ------------------------------------------------------------------------------


def flip_last_bit(data: bytes) -> bytes:
    """One envelope, its last bit flipped (two seal() calls would differ everywhere, and the
    second's last byte, flipped, matches the first's one time in 256)."""
    return data[:-1] + bytes([data[-1] ^ 1])


def resign(data: bytes, change: dict[int, int]) -> bytes:
    """Change bytes of the signed part, then sign again with the real server key."""
    body = bytearray(data[:-64])
    for index, value in change.items():
        body[index] = value
    return bytes(body) + SERVER.sign(env.SIGNATURE_CONTEXT + bytes(body))


OTHER_SERVER = Ed25519PrivateKey.generate()


@pytest.mark.parametrize(
    ("make", "kwargs", "error"),
    [
        pytest.param(
            lambda: sealed(),
            {"server_public_key": OTHER_SERVER.public_key()},
            BadSignature,
            id="wrong-server-key",
        ),
        pytest.param(
            lambda: flip_last_bit(sealed()),
            {},
            BadSignature,
            id="signature-changed",
        ),
        pytest.param(lambda: sealed() + b"\x00", {}, BadSignature, id="trailing-byte"),
        pytest.param(
            lambda: sealed(device_id="device-b", recipient=DEVICE_B),
            {},
            WrongDevice,
            id="other-devices-envelope",
        ),
        pytest.param(
            lambda: sealed(recipient=DEVICE_B), {}, DecryptFailed, id="sealed-to-another-key"
        ),
        pytest.param(lambda: sealed(version=4), {}, StaleVersion, id="older-version"),
        pytest.param(lambda: sealed(version=5), {"last_version": 5}, StaleVersion, id="replayed"),
        pytest.param(lambda: b"", {}, Malformed, id="empty"),
        pytest.param(lambda: sealed()[: env.MIN_ENVELOPE_BYTES - 1], {}, Malformed, id="short"),
        pytest.param(lambda: b"XXXX" + sealed()[4:], {}, Malformed, id="bad-magic"),
        pytest.param(
            lambda: resign(sealed(), {4: 2}), {}, UnsupportedFormat, id="unknown-format-signed"
        ),
        pytest.param(lambda: resign(sealed(), {5: 9}), {}, Malformed, id="unknown-kind-signed"),
        pytest.param(
            lambda: resign(sealed(), {23: ord("/")}), {}, Malformed, id="bad-device-id-signed"
        ),
        pytest.param(lambda: resign(sealed(), {22: 200}), {}, Malformed, id="bad-id-len-signed"),
        pytest.param(
            lambda: resign(sealed(), dict.fromkeys(range(6, 14), 0)),
            {},
            Malformed,
            id="version-zero-signed",
        ),
        pytest.param(
            lambda: resign(sealed(), dict.fromkeys(range(14, 22), 0xFF)),
            {},
            Malformed,
            id="created-out-of-range-signed",
        ),
        pytest.param(
            lambda: b"FLEV\x01" + bytes(env.MAX_ENVELOPE_BYTES), {}, TooLarge, id="oversized"
        ),
    ],
)
def test_refusals(make: Any, kwargs: dict[str, Any], error: type[EnvelopeError]) -> None:
    with pytest.raises(error):
        opened(make(), **kwargs)


def test_not_bytes_is_malformed() -> None:
    with pytest.raises(Malformed):
        opened(sealed().hex())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("plaintext", "kind_code"),
    [
        pytest.param(b"not json", 1, id="not-json"),
        pytest.param(b"\xff\xfe", 1, id="not-utf8"),
        pytest.param(b"[1, 2]", 1, id="array"),
        pytest.param(b'{"password": "x"}', 1, id="no-kind"),
        pytest.param(b'{"kind": "command"}', 1, id="kind-differs-from-header"),
        pytest.param(b'{"kind": "credentials", "a": 1, "a": 2}', 1, id="duplicate-key"),
        pytest.param(b'{"kind": "credentials", "a": NaN}', 1, id="nan"),
        pytest.param(b"[" * 100_000, 1, id="deep-nesting"),
    ],
)
def test_signed_but_malformed_plaintext(plaintext: bytes, kind_code: int) -> None:
    data = reference_seal(plaintext, kind_code=kind_code)
    if len(data) > env.MAX_ENVELOPE_BYTES:
        data = reference_seal(plaintext[:60_000], kind_code=kind_code)
    with pytest.raises(Malformed):
        opened(data)


def test_every_flipped_bit_is_refused() -> None:
    data = sealed()
    for index in range(len(data)):
        for bit in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= bit
            expected: type[EnvelopeError] = BadSignature
            if index < 4:
                expected = Malformed
            elif index == 4:
                expected = UnsupportedFormat
            with pytest.raises(expected):
                opened(bytes(tampered))


def test_every_truncation_is_refused() -> None:
    data = sealed()
    for length in range(len(data)):
        with pytest.raises(Malformed if length < env.MIN_ENVELOPE_BYTES else BadSignature):
            opened(data[:length])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"device_id": "a/b"}, id="device-id-with-slash"),
        pytest.param({"device_id": "+"}, id="device-id-wildcard"),
        pytest.param({"device_id": ""}, id="empty-device-id"),
        pytest.param({"device_id": "a" * 129}, id="long-device-id"),
        pytest.param({"device_id": "a\n"}, id="device-id-newline"),
        pytest.param({"device_id": "rpi4.kitchen_01"}, id="device-id-dot-underscore"),
        pytest.param({"device_id": "ab"}, id="short-device-id"),
        pytest.param({"version": 0}, id="version-zero"),
        pytest.param({"version": -1}, id="version-negative"),
        pytest.param({"version": True}, id="version-bool"),
        pytest.param({"version": 2**63}, id="version-too-big"),
        pytest.param({"kind": "other"}, id="unknown-kind"),
        pytest.param({"kind": "command"}, id="payload-kind-differs"),
        pytest.param({"now": datetime(2026, 1, 1)}, id="naive-now"),
        pytest.param({"payload": {"blob": "x" * env.MAX_ENVELOPE_BYTES}}, id="too-large"),
    ],
)
def test_seal_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "payload": {**CREDS, "kind": "credentials"},
        "device_id": "device-a",
        "version": 1,
        "kind": "credentials",
        "device_public_key": DEVICE_A.public_key(),
        "server_private_key": SERVER,
        "now": NOW,
    }
    args.update(kwargs)
    payload = args.pop("payload")
    with pytest.raises(ValueError):
        seal(payload, **args)


# --- mutations: whatever is done to a valid envelope, open_envelope refuses it ---------------
# Any change to a valid envelope is refused with an EnvelopeError, never another exception and
# never a success. Example counts follow the Hypothesis profile (tests/conftest.py):
# HYPOTHESIS_PROFILE=nightly runs 10,000 per class.
VALID = [
    sealed(version=5),
    sealed(version=6),
    sealed({"command": "pull", "images": ["a/b:1"]}, kind="command", version=7),
    sealed({**CREDS, "password": "p" * 300}, version=8),
]
# Sealed by the real server for the real key, but for another device id or an old version.
OTHER_DEVICE = sealed(device_id="device-b", recipient=DEVICE_A, version=9)
OTHER_DEVICE_OWN_KEY = sealed(device_id="device-b", recipient=DEVICE_B, version=9)
LAST_VERSION = 4
envelopes = st.sampled_from(VALID)


def refused(data: bytes, **kwargs: Any) -> EnvelopeError:
    """open_envelope's error for ``data``; fails the test on success or any other exception."""
    try:
        result = opened(data, last_version=LAST_VERSION, **kwargs)
    except EnvelopeError as error:
        return error
    raise AssertionError(f"a mutated envelope was accepted: {result!r}")


def test_every_valid_envelope_opens() -> None:
    """The mutations start from envelopes that open: a refusal is the mutation's doing."""
    for data in VALID:
        assert opened(data, last_version=LAST_VERSION).device_id == "device-a"


@given(
    data=envelopes,
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)),
        min_size=1,
        max_size=8,
    ),
)
def test_bit_flips_are_refused(data: bytes, flips: list[tuple[int, int]]) -> None:
    tampered = bytearray(data)
    for position, bit in flips:
        tampered[position % len(data)] ^= 1 << bit
    if bytes(tampered) == data:  # two flips of one bit undo each other
        return
    refused(bytes(tampered))


@given(data=envelopes, cut=st.integers(min_value=1))
def test_truncations_are_refused(data: bytes, cut: int) -> None:
    refused(data[: -(1 + cut % len(data))])


@given(data=envelopes, extra=st.binary(min_size=1, max_size=100), at_start=st.booleans())
def test_extensions_are_refused(data: bytes, extra: bytes, at_start: bool) -> None:
    refused(extra + data if at_start else data + extra)


# The header's fields, as (start, end) byte offsets for the 8-byte "device-a" id.
HEADER_FIELDS = {
    "format": (4, 5),
    "kind": (5, 6),
    "version": (6, 14),
    "created": (14, 22),
    "id_len": (22, 23),
    "device_id": (23, 31),
    "ephemeral": (31, 63),
    "nonce": (63, 75),
    "ciphertext": (75, -64),
    "signature": (-64, None),
}


@given(
    pair=st.lists(st.sampled_from(range(len(VALID))), min_size=2, max_size=2, unique=True),
    fields=st.sets(st.sampled_from(sorted(HEADER_FIELDS)), min_size=1),
)
def test_fields_swapped_between_envelopes_are_refused(pair: list[int], fields: set[str]) -> None:
    """One envelope with some of its fields taken from another (both valid, same device)."""
    first, second = VALID[pair[0]], VALID[pair[1]]
    parts = []
    for name in ["magic", *HEADER_FIELDS]:
        start, end = HEADER_FIELDS.get(name, (0, 4))
        parts.append((second if name in fields else first)[start:end])
    swapped = b"".join(parts)
    if swapped in VALID:  # every field that differs came from one side
        return
    refused(swapped)


@given(first=envelopes, second=envelopes, i=st.integers(min_value=0), j=st.integers(min_value=0))
def test_splices_of_two_envelopes_are_refused(first: bytes, second: bytes, i: int, j: int) -> None:
    spliced = first[: i % (len(first) + 1)] + second[j % (len(second) + 1) :]
    if spliced in VALID:
        return
    refused(spliced)


@given(
    version=st.integers(min_value=1, max_value=env.MAX_VERSION),
    behind=st.integers(min_value=0, max_value=2**20),
)
def test_an_older_or_replayed_version_is_refused(version: int, behind: int) -> None:
    """The device has opened ``version + behind``: this envelope, and every older one, is stale."""
    data = sealed(version=version)
    last = min(env.MAX_VERSION, version + behind)
    with pytest.raises(StaleVersion):
        opened(data, last_version=last)


@given(
    data=st.sampled_from([OTHER_DEVICE, OTHER_DEVICE_OWN_KEY]),
    flips=st.lists(st.integers(min_value=0), max_size=2),
)
def test_another_devices_envelope_is_refused(data: bytes, flips: list[int]) -> None:
    tampered = bytearray(data)
    for position in flips:
        tampered[position % len(data)] ^= 1
    error = refused(bytes(tampered))
    if not flips:  # untouched: refused for what it is, not by accident
        assert isinstance(error, WrongDevice | DecryptFailed)
