"""Topic names for one device, and the device-id check that keeps them literal.

A device id becomes one topic level and part of the device's ACL. The check allows letters,
digits, ``.``, ``_`` and ``-`` only, so an id can never carry an MQTT wildcard (``+``, ``#``),
a level separator (``/``), a ``$`` prefix, NUL or any other control character, and so can never
widen an ACL beyond that one device.
"""

from __future__ import annotations

import re

from fleet.domain.errors import ValidationError

TOPIC_ROOT = "fleet/v1/devices"
CREDENTIALS = "credentials"
COMMANDS = "commands"
STATUS = "status"
MAX_DEVICE_ID_LENGTH = 128
# fullmatch, never match with "$": "$" also matches before a trailing newline.
_DEVICE_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_DEVICE_ID_LENGTH - 1}}}")

# What the fleet server subscribes to: every device's status topic.
ALL_STATUS_TOPICS = f"{TOPIC_ROOT}/+/{STATUS}"
ALL_CREDENTIALS_TOPICS = f"{TOPIC_ROOT}/+/{CREDENTIALS}"
ALL_COMMANDS_TOPICS = f"{TOPIC_ROOT}/+/{COMMANDS}"


def is_valid_device_id(device_id: object) -> bool:
    return isinstance(device_id, str) and _DEVICE_ID_RE.fullmatch(device_id) is not None


def validate_device_id(device_id: object) -> str:
    if not is_valid_device_id(device_id):
        raise ValidationError(
            f"invalid device id {device_id!r}: use 1 to {MAX_DEVICE_ID_LENGTH} letters, "
            "digits, '.', '_' or '-', starting with a letter or digit",
            code="InvalidDeviceId",
        )
    return str(device_id)


def device_prefix(device_id: str) -> str:
    return f"{TOPIC_ROOT}/{validate_device_id(device_id)}"


def device_filter(device_id: str) -> str:
    """Every topic of one device: ``fleet/v1/devices/{id}/#``."""
    return f"{device_prefix(device_id)}/#"


def credentials_topic(device_id: str) -> str:
    return f"{device_prefix(device_id)}/{CREDENTIALS}"


def commands_topic(device_id: str) -> str:
    return f"{device_prefix(device_id)}/{COMMANDS}"


def status_topic(device_id: str) -> str:
    return f"{device_prefix(device_id)}/{STATUS}"


def device_id_from_status_topic(topic: str) -> str | None:
    """The device id of a status topic, or None when the topic is not one."""
    root, sep, rest = topic.partition(f"{TOPIC_ROOT}/")
    if root or not sep:
        return None
    device_id, sep, leaf = rest.partition("/")
    if not sep or leaf != STATUS or not is_valid_device_id(device_id):
        return None
    return device_id
