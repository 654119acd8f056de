"""Topic names for one device, for both sides (docs/protocol.md, "Topics").

Every topic is built from a device id that passed the one device-id rule (``device_id``), so a
topic level can never carry a wildcard, a separator or a ``$`` prefix, and the ACL built from it
never reaches past that one device. A builder given an invalid id raises ``InvalidDeviceId``.
"""

from __future__ import annotations

from device_agent.protocol.device_id import is_valid_device_id, validate_device_id

TOPIC_ROOT = "fleet/v1/devices"
CREDENTIALS = "credentials"
COMMANDS = "commands"
STATUS = "status"
LEAVES = (CREDENTIALS, COMMANDS, STATUS)

# What the fleet server subscribes to: every device's status topic.
ALL_STATUS_TOPICS = f"{TOPIC_ROOT}/+/{STATUS}"
ALL_CREDENTIALS_TOPICS = f"{TOPIC_ROOT}/+/{CREDENTIALS}"
ALL_COMMANDS_TOPICS = f"{TOPIC_ROOT}/+/{COMMANDS}"

# A device connects with the client id CLIENT_ID_PREFIX + its id, and its broker login is
# accepted with no other (so a leaked login cannot be used beside the device's own session).
CLIENT_ID_PREFIX = "fleet-agent-"


def device_client_id(device_id: str) -> str:
    return CLIENT_ID_PREFIX + validate_device_id(device_id)


def device_prefix(device_id: str) -> str:
    return f"{TOPIC_ROOT}/{validate_device_id(device_id)}"


def device_topic(device_id: str, leaf: str) -> str:
    """``fleet/v1/devices/{id}/{leaf}``, for one of ``LEAVES``."""
    if leaf not in LEAVES:
        raise ValueError(f"unknown topic {leaf!r}")
    return f"{device_prefix(device_id)}/{leaf}"


def device_filter(device_id: str) -> str:
    """Every topic of one device: ``fleet/v1/devices/{id}/#``."""
    return f"{device_prefix(device_id)}/#"


def credentials_topic(device_id: str) -> str:
    return device_topic(device_id, CREDENTIALS)


def commands_topic(device_id: str) -> str:
    return device_topic(device_id, COMMANDS)


def status_topic(device_id: str) -> str:
    return device_topic(device_id, STATUS)


def device_id_from_status_topic(topic: str) -> str | None:
    """The device id of a status topic, or None when the topic is not one."""
    root, sep, rest = topic.partition(f"{TOPIC_ROOT}/")
    if root or not sep:
        return None
    device_id, sep, leaf = rest.partition("/")
    if not sep or leaf != STATUS or not is_valid_device_id(device_id):
        return None
    return device_id
