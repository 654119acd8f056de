"""The broker refuses messages over its size limit (issue 12, defects 8 and 15).

A 20 MB retained message to a device's own status topic was accepted and then read by the
server. The shipped configuration now sets ``max_packet_size``; every configuration the project
writes derives from that file (the tests' brokers, ``scripts/start``, compose), and the tests'
brokers are started from it here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device_agent.protocol.envelope import MAX_ENVELOPE_BYTES
from fleet.mqtt import topics
from tests.support.mosquitto import SHIPPED_CONFIG, broker_config
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
HUGE = 20 * 1024 * 1024
PROTOCOLS = [pytest.param(mqtt.MQTTv5, id="mqtt5"), pytest.param(mqtt.MQTTv311, id="mqtt311")]


def _limit(config: str) -> int:
    found = re.findall(r"^max_packet_size (\d+)$", config, re.MULTILINE)
    assert len(found) == 1, "exactly one max_packet_size line"
    return int(found[0])


def test_the_shipped_configuration_and_the_tests_brokers_set_the_limit(tmp_path: Path) -> None:
    shipped = SHIPPED_CONFIG.read_text()
    limit = _limit(shipped)
    # room for the largest sealed envelope the agent accepts, with its topic and headers
    assert MAX_ENVELOPE_BYTES + 1024 <= limit <= 4 * MAX_ENVELOPE_BYTES
    derived = broker_config(shipped, port=1, directory=tmp_path, autosave_interval_s=1)
    assert _limit(derived) == limit


def test_scripts_start_derives_its_broker_configuration_from_the_shipped_file() -> None:
    start = (ROOT / "scripts" / "start").read_text()
    assert "deploy/mosquitto/mosquitto.conf > " in start
    assert "max_packet_size" not in start  # nothing removes or changes the limit


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_20_mb_status_message_is_refused_and_never_retained(
    device: Callable[[], Any], server_login: Any, connect: Callable[..., Any], protocol: int
) -> None:
    login = device()
    status = topics.status_topic(login.device_id)
    flooder = connect(login, protocol)
    info = flooder.client.publish(status, b"x" * HUGE, qos=1, retain=True)
    assert flooder.disconnected.wait(scaled(10.0)), "the broker kept the connection"
    assert info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN
    # The same device, connected again, leaves a small retained status; the server, which
    # subscribes after both, reads only that one: the 20 MB message was never kept.
    again = connect(login, protocol)
    assert not again.publish(status, b'{"type":"hello"}', retain=True).is_failure
    server = connect(server_login)
    (granted,) = server.subscribe(status)
    assert not granted.is_failure
    message = server.wait_for_message(status)
    assert message.payload == b'{"type":"hello"}' and message.retain
    assert all(len(m.payload) < HUGE for m in server.messages)


def test_the_largest_envelope_still_reaches_its_device(
    device: Callable[[], Any], server_login: Any, connect: Callable[..., Any]
) -> None:
    login = device()
    server = connect(server_login)
    payload = b"e" * MAX_ENVELOPE_BYTES
    credentials = topics.credentials_topic(login.device_id)
    assert not server.publish(credentials, payload, retain=True).is_failure
    client = connect(login)
    (granted,) = client.subscribe(credentials)
    assert not granted.is_failure
    assert client.wait_for_message(credentials).payload == payload
