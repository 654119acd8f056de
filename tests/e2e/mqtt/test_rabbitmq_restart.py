"""test_broker_restart.py's twin on RabbitMQ 3.10 in FLEET_MQTT_AUTH=http mode: what survives a
node crash (SIGKILL) or a clean stop, and how the server's MQTT 3.1.1 connection comes back.

The node asks a fleet app served on loopback in a thread (the real routes and decisions, on
SQLite); nothing of a login lives on the broker. Observed with RabbitMQ 3.10.8:
- logins and their state survive both (they are fleet's rows; the node keeps none);
- retained messages survive a clean stop (the DETS store of deploy/rabbitmq) and were lost on
  SIGKILL (as on mosquitto; fleet publishes every pending delivery again on reconnecting): the
  test requires the first and prints what it saw of the second;
- the publisher reconnects and subscribes again by itself; a publish that timed out while the
  node was down stays queued in paho and arrives after the reconnect.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from werkzeug.serving import make_server

from fleet.app import create_app
from fleet.mqtt import topics
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.connection import MQTT_311
from fleet.mqtt.errors import BrokerTimeoutError
from fleet.mqtt.provisioning import device_client_id
from fleet.mqtt.publisher import Publisher
from fleet.services import Services
from fleet.services.broker_login import SERVER_USERNAME, server_password
from tests.e2e.mqtt.conftest import MqttTestClient
from tests.support.http_logins import enroll, http_fleet
from tests.support.ports import LOOPBACK, free_port
from tests.support.rabbitmq import RabbitMQ
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e
WAIT_S = 10.0
RECONNECT_WAIT_S = 30.0
DOWN_TIMEOUT_S = 0.3
FAST_RECONNECT = {"reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 0.5}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the node's restart is what is tested (and it takes a while)."""
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@dataclass
class Stack:
    node: RabbitMQ
    services: Services


@pytest.fixture
def stack(make_services: Any) -> Iterator[Stack]:
    port = free_port()
    node = RabbitMQ(auth_url=f"http://{LOOPBACK}:{port}/mqtt-auth/rabbitmq")
    services = http_fleet(lambda **o: make_services(**{**o, "mqtt_auth_secret": node.auth_secret}))
    server = make_server(LOOPBACK, port, create_app(services.ctx.settings, services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with node:
            yield Stack(node, services)
    finally:
        server.shutdown()
        server.server_close()


def device_client(node: RabbitMQ, device_id: str, password: str) -> MqttTestClient:
    return MqttTestClient(
        node.host,
        node.mqtt_port,
        device_id,
        password,
        mqtt.MQTTv311,
        client_id=device_client_id(device_id),
    )


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_logins_survive_a_restart_and_the_server_connection_comes_back(
    stack: Stack, how: str
) -> None:
    node, services = stack.node, stack.services
    password = enroll(services, "rabbit-1")
    banned = enroll(services, "rabbit-2")
    services.devices.disable("rabbit-2", actor="t")
    statuses: queue.Queue[tuple[str, bytes]] = queue.Queue()
    publisher = Publisher(
        BrokerAddress(node.host, node.mqtt_port),
        SERVER_USERNAME,
        server_password(services.ctx.hasher),
        on_status=lambda device_id, payload: statuses.put((device_id, payload)),
        protocol=MQTT_311,
        **FAST_RECONNECT,
    ).start()
    credentials = topics.credentials_topic("rabbit-1")
    commands = topics.commands_topic("rabbit-1")
    clients: list[MqttTestClient] = []
    try:
        publisher.publish(credentials, b"v1")
        if how == "kill":
            node.kill()
        else:
            node.stop()
        with pytest.raises(BrokerTimeoutError):
            publisher.publish(commands, b"wipe", timeout_s=DOWN_TIMEOUT_S)
        node.start()

        # Logins are fleet's: the active device is let in, the disabled one is not.
        device = device_client(node, "rabbit-1", password)
        clients.append(device)
        assert not device.connect().is_failure
        refused = device_client(node, "rabbit-2", banned)
        clients.append(refused)
        assert refused.connect().is_failure
        # The server's connection came back by itself, its status subscription included.
        wait_until(lambda: publisher.connected, "the publisher reconnected", RECONNECT_WAIT_S)
        wait_until(
            lambda: (
                device.publish(topics.status_topic("rabbit-1"), b"back") is not None
                and _got(statuses, ("rabbit-1", b"back"))
            ),
            "the device's status at the server",
            WAIT_S,
        )
        # The publish that timed out stayed queued in paho and was sent on reconnecting.
        device.subscribe(commands)
        device.wait_for_message(commands, b"wipe")
        late = device_client(node, "rabbit-1", password)
        clients.append(late)
        device.close()
        assert not late.connect().is_failure
        late.subscribe(credentials)
        late.subscribe(commands)
        late.wait_for_message(commands, b"wipe")
        kept = credentials in late.topics_received()
        print(f"\nRabbitMQ 3.10 after {how}: retained credentials kept: {kept}")
        if how == "stop":
            assert kept  # the DETS store of deploy/rabbitmq keeps them over a clean stop
    finally:
        for client in clients:
            client.close()
        publisher.close()


def _got(received: queue.Queue[tuple[str, bytes]], wanted: tuple[str, bytes]) -> bool:
    try:
        while True:
            if received.get(timeout=scaled(0.5)) == wanted:
                return True
    except queue.Empty:
        return False
