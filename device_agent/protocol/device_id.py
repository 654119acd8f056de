"""THE device-id rule, for both sides: the enrollment API, the MQTT logins and topics, the
envelope's header and the agent all check an id with ``is_valid_device_id`` here.

3 to 46 ASCII letters, digits and hyphens, starting with a letter or digit. An id names a
registry token (``dev-<id>``), an MQTT login and one topic level, so it can never carry an MQTT
wildcard (``+``, ``#``), a level separator (``/``), a ``$`` prefix, ``%`` (ACL substitution in
newer brokers), NUL or any other control character, and can never widen an ACL beyond its own
device.
"""

from __future__ import annotations

import re

MIN_LENGTH = 3
MAX_LENGTH = 46
DEVICE_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9-]{{{MIN_LENGTH - 1},{MAX_LENGTH - 1}}}")
RULE = (
    f"use {MIN_LENGTH} to {MAX_LENGTH} letters, digits and hyphens, starting with a letter or digit"
)


class InvalidDeviceId(ValueError):
    pass


def is_valid_device_id(device_id: object) -> bool:
    # fullmatch, never "$": "$" also matches before a trailing newline.
    return isinstance(device_id, str) and DEVICE_ID_RE.fullmatch(device_id) is not None


def validate_device_id(device_id: object) -> str:
    """``device_id`` itself when valid; ``InvalidDeviceId`` otherwise."""
    if not is_valid_device_id(device_id):
        raise InvalidDeviceId(f"invalid device id {device_id!r}: {RULE}")
    return str(device_id)
