"""The server's side of the topic names and the device-id rule: both are defined once, in
``device_agent.protocol`` (``topics``, ``device_id``); this adapter raises the server's
``ValidationError(code="InvalidDeviceId")`` instead of the protocol's ``InvalidDeviceId``, for the
MQTT provisioning, the delivery and the enrollment check of the services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device_agent.protocol import topics as wire
from device_agent.protocol.device_id import MAX_LENGTH as MAX_DEVICE_ID_LENGTH
from device_agent.protocol.device_id import InvalidDeviceId, is_valid_device_id
from device_agent.protocol.device_id import validate_device_id as check_device_id
from device_agent.protocol.topics import (
    ALL_COMMANDS_TOPICS,
    ALL_CREDENTIALS_TOPICS,
    ALL_STATUS_TOPICS,
    CLIENT_ID_PREFIX,
    COMMANDS,
    CREDENTIALS,
    STATUS,
    TOPIC_ROOT,
    device_id_from_status_topic,
)
from fleet.domain.errors import ValidationError

__all__ = [
    "ALL_COMMANDS_TOPICS",
    "ALL_CREDENTIALS_TOPICS",
    "ALL_STATUS_TOPICS",
    "CLIENT_ID_PREFIX",
    "COMMANDS",
    "CREDENTIALS",
    "MAX_DEVICE_ID_LENGTH",
    "STATUS",
    "TOPIC_ROOT",
    "commands_topic",
    "credentials_topic",
    "device_filter",
    "device_id_from_status_topic",
    "device_prefix",
    "is_valid_device_id",
    "status_topic",
    "validate_device_id",
]


def _server_error(build: Callable[[Any], str], device_id: object) -> str:
    """``build(device_id)`` with the protocol's one check; its refusal as the server's error."""
    try:
        return build(device_id)
    except InvalidDeviceId as error:
        raise ValidationError(str(error), code="InvalidDeviceId") from None


def validate_device_id(device_id: object) -> str:
    return _server_error(check_device_id, device_id)


def device_prefix(device_id: str) -> str:
    return _server_error(wire.device_prefix, device_id)


def device_filter(device_id: str) -> str:
    """Every topic of one device: ``fleet/v1/devices/{id}/#``."""
    return _server_error(wire.device_filter, device_id)


def credentials_topic(device_id: str) -> str:
    return _server_error(wire.credentials_topic, device_id)


def commands_topic(device_id: str) -> str:
    return _server_error(wire.commands_topic, device_id)


def status_topic(device_id: str) -> str:
    return _server_error(wire.status_topic, device_id)
