"""Device ids and the topics built from them (fleet/mqtt/topics.py over device_agent.protocol)."""

from __future__ import annotations

import pytest

from fleet.domain.errors import ValidationError
from fleet.mqtt import topics

# One device-id rule (device_agent.protocol.device_id, issue 14): 3 to 46 letters, digits and
# hyphens. Ids this check once accepted under the old topic rule (1 to 128 characters with "."
# and "_") are refused now, below.
VALID_IDS = [
    "abc",
    "Z00",
    "000",
    "pi-0001",
    "rpi4-kitchen-01",
    "A" * topics.MAX_DEVICE_ID_LENGTH,
    "a--b",
    "xy-",
]

INVALID_IDS = [
    ("", "empty"),
    ("a/b", "level separator"),
    ("+", "single-level wildcard"),
    ("a+", "wildcard inside"),
    ("#", "multi-level wildcard"),
    ("a#", "wildcard inside"),
    ("$SYS", "dollar prefix"),
    ("a\x00b", "NUL"),
    ("a\nb", "newline"),
    ("abc\n", "trailing newline ($ in a regex would accept it)"),
    ("a\tb", "tab"),
    ("a\x7f", "DEL"),
    ("a b", "space"),
    (".hidden", "must start with a letter or digit"),
    ("-a", "must start with a letter or digit"),
    ("_a", "must start with a letter or digit"),
    ("A" * (topics.MAX_DEVICE_ID_LENGTH + 1), "too long"),
    ("caf\u00e9", "non-ASCII letter"),
    ("\u0661\u0662", "non-ASCII digits"),
    ("a%c", "percent (ACL substitution in newer brokers)"),
    ("a*", "star"),
    ("a:b", "colon"),
    ("a", "too short"),
    ("x-", "too short"),
    ("rpi4.kitchen_01", "dot and underscore"),
    ("a..b", "dot"),
    ("a_b_c", "underscore"),
    ("A" * 128, "too long"),
]


@pytest.mark.parametrize("device_id", VALID_IDS)
def test_valid_device_ids(device_id: str) -> None:
    assert topics.is_valid_device_id(device_id)
    assert topics.validate_device_id(device_id) == device_id


@pytest.mark.parametrize(("device_id", "why"), INVALID_IDS)
def test_invalid_device_ids(device_id: str, why: str) -> None:
    assert not topics.is_valid_device_id(device_id), why
    with pytest.raises(ValidationError) as caught:
        topics.validate_device_id(device_id)
    assert caught.value.code == "InvalidDeviceId"


@pytest.mark.parametrize("not_a_string", [None, 1, b"abc", ["a"]])
def test_device_id_must_be_a_string(not_a_string: object) -> None:
    assert not topics.is_valid_device_id(not_a_string)
    with pytest.raises(ValidationError):
        topics.validate_device_id(not_a_string)


def test_topics_of_a_device() -> None:
    assert topics.credentials_topic("pi-1") == "fleet/v1/devices/pi-1/credentials"
    assert topics.commands_topic("pi-1") == "fleet/v1/devices/pi-1/commands"
    assert topics.status_topic("pi-1") == "fleet/v1/devices/pi-1/status"
    assert topics.device_filter("pi-1") == "fleet/v1/devices/pi-1/#"
    assert topics.ALL_STATUS_TOPICS == "fleet/v1/devices/+/status"


@pytest.mark.parametrize(
    "build",
    [topics.credentials_topic, topics.commands_topic, topics.status_topic, topics.device_filter],
)
@pytest.mark.parametrize("device_id", ["+", "#", "a/b", "", "a\x00"])
def test_no_topic_is_built_from_a_bad_id(build: object, device_id: str) -> None:
    with pytest.raises(ValidationError):
        build(device_id)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("topic", "device_id"),
    [
        ("fleet/v1/devices/pi-1/status", "pi-1"),
        ("fleet/v1/devices/pi-1/credentials", None),
        ("fleet/v1/devices/pi-1/status/extra", None),
        ("fleet/v1/devices//status", None),
        ("fleet/v1/devices/+/status", None),
        ("fleet/v1/devices/a b/status", None),
        ("x/fleet/v1/devices/pi-1/status", None),
        ("fleet/v2/devices/pi-1/status", None),
        ("fleet/v1/devices/pi-1", None),
    ],
)
def test_device_id_from_status_topic(topic: str, device_id: str | None) -> None:
    assert topics.device_id_from_status_topic(topic) == device_id
