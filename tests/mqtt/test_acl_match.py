"""The dynamic-security ACLs decided in fleet (FLEET_MQTT_AUTH=http): the same answers the
roles give on mosquitto, for the device's and the server's ACLs."""

from __future__ import annotations

import pytest

from fleet.mqtt import provisioning
from fleet.mqtt.acl import AclType
from fleet.mqtt.acl_match import (
    MAX_TOPIC_LENGTH,
    decide,
    filter_within,
    from_routing_key,
    is_filter,
    topic_matches,
)

PUBLISH, SUBSCRIBE = AclType.PUBLISH_CLIENT_SEND, AclType.SUBSCRIBE_PATTERN
DEVICE = provisioning.device_acls("rpi-0001")
SERVER = provisioning.server_acls()


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("a/b", "a/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(
    ("wanted", "allowed", "inside"),
    [
        ("fleet/v1/devices/a/#", "fleet/v1/devices/a/#", True),
        ("fleet/v1/devices/a/credentials", "fleet/v1/devices/a/#", True),
        ("fleet/v1/devices/a/+", "fleet/v1/devices/a/#", True),
        ("fleet/v1/devices/+/#", "fleet/v1/devices/a/#", False),
        ("#", "fleet/v1/devices/a/#", False),
        ("fleet/v1/devices/#", "fleet/v1/devices/a/#", False),
        ("fleet/v1/devices/b/#", "fleet/v1/devices/a/#", False),
        ("fleet/v1/devices/+/status", "fleet/v1/devices/+/status", True),
        ("fleet/v1/devices/a/status", "fleet/v1/devices/+/status", True),
        ("fleet/v1/devices/+/#", "fleet/v1/devices/+/status", False),
        ("$SYS/#", "#", False),
    ],
)
def test_filter_within(wanted: str, allowed: str, inside: bool) -> None:
    assert filter_within(wanted, allowed) is inside


@pytest.mark.parametrize(
    "bad", ["", "a/#/b", "a/b#", "a+/b", "x" * (MAX_TOPIC_LENGTH + 1), "a\0b", "/".join("a" * 40)]
)
def test_malformed_filters_are_refused(bad: str) -> None:
    assert not is_filter(bad)
    assert decide(DEVICE, SUBSCRIBE, bad) is False


def test_a_device_publishes_only_its_status() -> None:
    assert decide(DEVICE, PUBLISH, "fleet/v1/devices/rpi-0001/status")
    for topic in (
        "fleet/v1/devices/rpi-0001/credentials",
        "fleet/v1/devices/rpi-0001/commands",
        "fleet/v1/devices/rpi-0002/status",
        "fleet/v1/devices/+/status",
        "fleet/v1/devices/rpi-0001/status/more",
        "anything",
    ):
        assert not decide(DEVICE, PUBLISH, topic), topic


def test_a_device_subscribes_only_inside_its_own_topics() -> None:
    for ok in (
        "fleet/v1/devices/rpi-0001/#",
        "fleet/v1/devices/rpi-0001/credentials",
        "fleet/v1/devices/rpi-0001/commands",
    ):
        assert decide(DEVICE, SUBSCRIBE, ok), ok
    for refused in ("#", "fleet/v1/devices/+/credentials", "fleet/v1/devices/rpi-0002/#"):
        assert not decide(DEVICE, SUBSCRIBE, refused), refused


def test_the_server_publishes_credentials_and_commands_and_hears_status() -> None:
    assert decide(SERVER, PUBLISH, "fleet/v1/devices/rpi-0001/credentials")
    assert decide(SERVER, PUBLISH, "fleet/v1/devices/rpi-0001/commands")
    assert not decide(SERVER, PUBLISH, "fleet/v1/devices/rpi-0001/status")
    assert decide(SERVER, SUBSCRIBE, "fleet/v1/devices/+/status")
    assert not decide(SERVER, SUBSCRIBE, "fleet/v1/devices/+/credentials")
    assert not decide(SERVER, SUBSCRIBE, "#")


def test_only_publish_and_subscribe_are_decided() -> None:
    with pytest.raises(ValueError, match="no decision"):
        decide(DEVICE, AclType.PUBLISH_CLIENT_RECEIVE, "fleet/v1/devices/rpi-0001/status")


def test_routing_keys_become_topics_again() -> None:
    assert from_routing_key("fleet.v1.devices.rpi-0001.#") == "fleet/v1/devices/rpi-0001/#"
    assert from_routing_key("fleet.v1.devices.*.status") == "fleet/v1/devices/+/status"
