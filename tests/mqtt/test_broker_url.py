"""Broker URLs (fleet/mqtt/broker_url.py)."""

from __future__ import annotations

import pytest

from fleet.domain.errors import ValidationError
from fleet.mqtt.broker_url import BrokerAddress, parse_broker_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("127.0.0.1", 1883, tls=False)),
        ("mqtt://broker.example:1884", BrokerAddress("broker.example", 1884, tls=False)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, tls=True)),
        ("mqtts://broker.example:9883/", BrokerAddress("broker.example", 9883, tls=True)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, tls=False)),
    ],
)
def test_valid_urls(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:1883",
        "tcp://127.0.0.1:1883",
        "http://broker",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://user:secret@broker",
        "mqtt://broker/path",
        "mqtt://broker?x=1",
        "mqtt://broker:notaport",
        "mqtt://broker:70000",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_broker_url(url)
    assert caught.value.code == "InvalidBrokerUrl"


def test_url_round_trip() -> None:
    assert parse_broker_url("mqtts://b.example").url == "mqtts://b.example:8883"
    assert parse_broker_url("mqtt://[::1]").url == "mqtt://[::1]:1883"


def test_a_password_in_the_url_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_broker_url("mqtt://admin:hunter2@broker:1883")
    assert "hunter2" not in caught.value.message
    assert "broker:1883" in caught.value.message


def test_ca_file_is_kept() -> None:
    assert parse_broker_url("mqtts://b", ca_file="/etc/ca.pem").ca_file == "/etc/ca.pem"
