"""Fixtures for the MQTT tests: a real broker, its dynsec admin, provisioned devices and small
synchronous MQTT clients that play devices and eavesdroppers."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.provisioning import device_client_id, provision_device, provision_server_login
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled

# How long a blocking call waits for the broker's answer (unscaled; see tests/support/timing).
WAIT_S = 5.0
# Short reconnect waits keep loop_stop() (which waits out paho's current sleep) quick.
RECONNECT_DELAY_S = 0.1
FAST_RECONNECT: dict[str, float] = {
    "reconnect_min_delay_s": RECONNECT_DELAY_S,
    "reconnect_max_delay_s": RECONNECT_DELAY_S,
}


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Login:
    device_id: str
    username: str
    password: str
    client_id: str | None = None  # the client id a device login is bound to


@dataclass
class MqttTestClient:
    """A blocking MQTT client: every call waits for the broker's answer to it."""

    host: str
    port: int
    username: str
    password: str
    protocol: int = mqtt.MQTTv5
    messages: list[Message] = field(default_factory=list)
    client_id: str | None = None  # None: a random one

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"test-{secrets.token_hex(4)}",
            protocol=self.protocol,  # type: ignore[arg-type]
        )
        self.client.username_pw_set(self.username, self.password)
        self.client.reconnect_delay_set(RECONNECT_DELAY_S, RECONNECT_DELAY_S)  # type: ignore[arg-type]
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._acks: dict[int, Any] = {}
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # callbacks (network thread)
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._connack = reason
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        self.disconnected.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._cond:
            self._acks[mid] = reasons
            self._cond.notify_all()

    def _on_publish(
        self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Properties | None
    ) -> None:
        with self._cond:
            self._acks[mid] = reason
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        limit = scaled(WAIT_S)
        with self._cond:
            if not self._cond.wait_for(ready, limit):
                raise TimeoutError(f"no {what} within {limit:g} s")

    # blocking API
    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason (the client stays connected on success)."""
        self.disconnected.clear()
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        self._wait(lambda: self._connack is not None, "CONNACK")
        assert self._connack is not None
        if self._connack.is_failure:
            self.client.loop_stop()
        return self._connack

    @property
    def connack(self) -> ReasonCode | None:
        return self._connack

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[ReasonCode]:
        _rc, mid = self.client.subscribe(topic_filter, qos=qos)
        self._wait(lambda: mid in self._acks, f"SUBACK for {topic_filter}")
        return list(self._acks.pop(mid))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Any:
        """Publish and return the PUBACK reason (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        self._wait(lambda: info.mid in self._acks, f"PUBACK on {topic}")
        return self._acks.pop(info.mid)

    def wait_for_message(self, topic: str, payload: bytes | None = None) -> Message:
        def found() -> Message | None:
            for message in self.messages:
                if message.topic == topic and (payload is None or message.payload == payload):
                    return message
            return None

        self._wait(lambda: found() is not None, f"message on {topic}")
        message = found()
        assert message is not None
        return message

    def topics_received(self) -> list[str]:
        with self._cond:
            return [message.topic for message in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as running:
        yield running


def address_of(broker: Mosquitto) -> BrokerAddress:
    return BrokerAddress(broker.host, broker.port)


@pytest.fixture(scope="session")
def address(broker: Mosquitto) -> BrokerAddress:
    return address_of(broker)


@pytest.fixture(scope="session")
def admin(broker: Mosquitto) -> Iterator[DynsecAdmin]:
    with DynsecAdmin(
        address_of(broker), broker.admin_username, broker.admin_password, **FAST_RECONNECT
    ) as client:
        yield client


@pytest.fixture
def fast_reconnect() -> dict[str, float]:
    """Keyword arguments for DynsecAdmin/Publisher: reconnect within a tenth of a second."""
    return dict(FAST_RECONNECT)


@pytest.fixture
def own_broker() -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that kill or stop it."""
    with Mosquitto() as running:
        yield running


def new_login(prefix: str = "dev") -> Login:
    device_id = f"{prefix}-{secrets.token_hex(4)}"
    return Login(
        device_id, f"u-{device_id}", secrets.token_urlsafe(16), device_client_id(device_id)
    )


@pytest.fixture
def fresh_login() -> Callable[[], Login]:
    """A new unique device id, username and password, not provisioned anywhere yet."""
    return new_login


@pytest.fixture
def device(admin: DynsecAdmin) -> Callable[[], Login]:
    """Provision a fresh device (unique id) on the shared broker."""

    def make() -> Login:
        login = new_login()
        provision_device(admin, login.device_id, login.username, login.password)
        return login

    return make


@pytest.fixture
def server_login(admin: DynsecAdmin) -> Login:
    login = new_login("server")
    provision_server_login(admin, login.username, login.password)
    return login


@pytest.fixture
def connect(broker: Mosquitto) -> Iterator[Callable[..., MqttTestClient]]:
    """connect(login, protocol=MQTTv5, expect_ok=True, to=broker, client_id=login's) -> a
    connected MqttTestClient, closed after the test; with expect_ok=False, check
    ``client.connack`` yourself."""
    made: list[MqttTestClient] = []

    def make(
        login: Login,
        protocol: int = mqtt.MQTTv5,
        *,
        expect_ok: bool = True,
        to: Mosquitto = broker,
        client_id: str | None = None,
    ) -> MqttTestClient:
        client = MqttTestClient(
            to.host,
            to.port,
            login.username,
            login.password,
            protocol,
            client_id=client_id or login.client_id,
        )
        made.append(client)
        reason = client.connect()
        if expect_ok and reason.is_failure:
            raise AssertionError(f"{login.username} could not connect: {reason}")
        return client

    yield make
    for client in made:
        client.close()
