"""The wire format between server and device: the sealed envelope, its refusals, the status
messages, the device-id rule, topic names and public-key encoding. Imports only the stdlib and
``cryptography``; it is the one part of the agent the server imports."""

from device_agent.protocol.device_id import InvalidDeviceId, is_valid_device_id, validate_device_id
from device_agent.protocol.envelope import (
    MAX_ENVELOPE_BYTES,
    Kind,
    Opened,
    claimed_version,
    open_envelope,
    seal,
)
from device_agent.protocol.errors import (
    BadSignature,
    DecryptFailed,
    EnvelopeError,
    Malformed,
    StaleVersion,
    TooLarge,
    UnsupportedFormat,
    WrongDevice,
)
from device_agent.protocol.keys import (
    InvalidPublicKey,
    ed25519_public_from_b64,
    public_key_b64,
    x25519_public_from_b64,
)
from device_agent.protocol.messages import (
    Ack,
    Hello,
    InvalidStatus,
    PullResult,
    Reject,
    StatusMessage,
    StatusNotJson,
    StatusTooLarge,
    parse_status,
)

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "Ack",
    "BadSignature",
    "DecryptFailed",
    "EnvelopeError",
    "Hello",
    "InvalidDeviceId",
    "InvalidPublicKey",
    "InvalidStatus",
    "Kind",
    "Malformed",
    "Opened",
    "PullResult",
    "Reject",
    "StaleVersion",
    "StatusMessage",
    "StatusNotJson",
    "StatusTooLarge",
    "TooLarge",
    "UnsupportedFormat",
    "WrongDevice",
    "claimed_version",
    "ed25519_public_from_b64",
    "is_valid_device_id",
    "open_envelope",
    "parse_status",
    "public_key_b64",
    "seal",
    "validate_device_id",
    "x25519_public_from_b64",
]
