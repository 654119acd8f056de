"""One long-lived paho 2 connection: built the same way for the admin and the publisher.

paho runs one network thread (``loop_start``) that also reconnects on its own, waiting from
``RECONNECT_MIN_DELAY_S`` up to ``RECONNECT_MAX_DELAY_S`` between attempts. ``Connection`` keeps
track of whether we are connected and why not, runs ``on_connected`` after every successful
(re)connect so that subscriptions are made again (``Connection.subscribe`` logs a refused one),
and maps paho's return codes to our errors (``check_rc``). ``ConnectionOwner`` is what a client
built on one connection shares: ``start``, ``close``, its state and ``with``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
RECONNECT_MIN_DELAY_S = 1.0
RECONNECT_MAX_DELAY_S = 30.0
CLIENT_ID_SUFFIX_BYTES = 6
# The protocols a connection speaks: MQTT 5 (mosquitto) or 3.1.1 (RabbitMQ 3.10's plugin).
MQTT_5 = "5"
MQTT_311 = "3.1.1"
PROTOCOLS = {MQTT_5: mqtt.MQTTv5, MQTT_311: mqtt.MQTTv311}
_WAIT_SLICE_S = 0.05


def unique_client_id(prefix: str) -> str:
    """Two connections with the same client id kick each other off; never share one."""
    return f"{prefix}-{secrets.token_hex(CLIENT_ID_SUFFIX_BYTES)}"


class Connection:
    """A paho client plus its connection state; callbacks run on paho's network thread."""

    def __init__(
        self,
        address: BrokerAddress,
        username: str,
        password: str,
        *,
        client_id: str,
        on_connected: Callable[[mqtt.Client], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        session_expiry_s: int = 0,
        reconnect_min_delay_s: float = RECONNECT_MIN_DELAY_S,
        reconnect_max_delay_s: float = RECONNECT_MAX_DELAY_S,
        keepalive_s: int = KEEPALIVE_S,
        protocol: str = MQTT_5,
    ) -> None:
        """``protocol``: ``MQTT_5`` or ``MQTT_311``; on 3.1.1 there is no session expiry, so
        the session is a clean one (nothing of it outlives the connection on the broker)."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown MQTT protocol {protocol!r}")
        self.protocol = protocol
        self.address = address
        self.client_id = client_id
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._connected = threading.Event()
        self._refused = threading.Event()
        self._state_lock = threading.Lock()
        self._last_failure = "not connected yet"
        self._started = False
        self._subscribing: dict[int, str] = {}  # SUBSCRIBE message id -> its topic filter

        if protocol == MQTT_5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
        client.username_pw_set(username, password)
        if address.tls:
            client.tls_set(ca_certs=address.ca_file)
        # paho's hints say int, but it only does float arithmetic and sleeps with these.
        client.reconnect_delay_set(reconnect_min_delay_s, reconnect_max_delay_s)  # type: ignore[arg-type]
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        self.client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_failure(self) -> str:
        with self._state_lock:
            return self._last_failure

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect in the background and wait until the broker accepts us.

        A refused login fails at once instead of waiting out the timeout.
        """
        if not self._started:
            self._refused.clear()
            if self.protocol == MQTT_5:
                properties = Properties(PacketTypes.CONNECT)
                if self._session_expiry_s:
                    properties.SessionExpiryInterval = self._session_expiry_s
                self.client.connect_async(
                    self.address.host,
                    self.address.port,
                    keepalive=self._keepalive_s,
                    clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=properties,
                )
            else:
                self.client.connect_async(
                    self.address.host, self.address.port, keepalive=self._keepalive_s
                )
            self.client.loop_start()
            self._started = True
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(_WAIT_SLICE_S):
            if self._refused.is_set() or time.monotonic() >= deadline:
                break
        if not self._connected.is_set():
            self.stop()
            raise BrokerUnavailableError(
                f"could not connect to the broker at {self.address.url} "
                f"(waited up to {timeout_s} s): {self.last_failure}"
            )

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    def require_connected(self, what: str) -> None:
        if not self._connected.is_set():
            raise BrokerUnavailableError(
                f"cannot {what}: not connected to the broker at {self.address.url} "
                f"({self.last_failure})"
            )

    def subscribe(self, topic: str, **options: Any) -> None:
        """Subscribe (``options`` as paho's: ``qos=`` or ``options=``); a refusal is logged.

        Called from ``on_connected``, on the network thread, so the broker's SUBACK cannot be
        handled before the message id is noted."""
        _rc, mid = self.client.subscribe(topic, **options)
        if mid is not None:
            with self._state_lock:
                self._subscribing[mid] = topic

    def _handle_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        with self._state_lock:
            topic = self._subscribing.pop(mid, "a topic")
        for reason in reasons:
            if reason.is_failure:
                log.error("MQTT %s may not subscribe to %s: %s", self.client_id, topic, reason)

    def _handle_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            with self._state_lock:
                self._last_failure = f"broker refused the connection: {reason}"
            self._refused.set()
            log.warning("MQTT %s: %s", self.client_id, self._last_failure)
            return
        if self._on_connected is not None:
            self._on_connected(client)
        with self._state_lock:
            self._last_failure = ""
        self._connected.set()

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        with self._state_lock:
            if was_connected or not self._last_failure:
                self._last_failure = f"connection lost: {reason}"
        if was_connected and self._started:
            log.warning("MQTT %s disconnected: %s", self.client_id, reason)
        if self._on_disconnected is not None:
            self._on_disconnected()


def check_rc(rc: MQTTErrorCode, what: str) -> None:
    """Turn paho's immediate return codes into our errors (NO_CONN included)."""
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise BrokerUnavailableError(f"cannot {what}: {mqtt.error_string(rc)}")


class ConnectionOwner:
    """Start, close, state and ``with`` for a client that owns one ``Connection``.

    A subclass sets ``self._connection``; one that holds waiting callers extends ``close``.
    """

    _connection: Connection

    def start(self, timeout_s: float = CONNECT_TIMEOUT_S) -> Self:
        """Connect and wait until the broker accepts us (``BrokerUnavailableError`` if not)."""
        self._connection.start(timeout_s)
        return self

    def close(self) -> None:
        self._connection.stop()

    @property
    def connected(self) -> bool:
        return self._connection.connected

    @property
    def last_failure(self) -> str:
        return self._connection.last_failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
