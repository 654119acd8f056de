"""The device's MQTT connection: a persistent session (MQTT 3.1.1, ``clean_session`` off, a
client id fixed per device), both server topics subscribed at QoS 1, and a ``hello`` published
on every connect.

Reconnection is ours, not paho's: paho's own waits double without jitter, and a fleet that lost
its broker would come back in lock-step against mosquitto's listen backlog of 100. A supervisor
thread connects, runs paho's network thread while the connection lives, and after a loss waits
a full-jitter exponential backoff (capped); the backoff restarts only after a connection that
lasted ``STABLE_CONNECTION_S``, so a broker that accepts and drops at once is not hammered.

Thread safety: paho may only be driven by one thread at a time while its network thread is not
running. The supervisor holds ``_lock`` while it (re)connects; ``publish`` never waits for it:
a message that finds the lock taken goes to a small outbox that the supervisor flushes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device_agent.protocol import messages
from device_agent.protocol.messages import Hello, StatusMessage
from device_agent.runtime.backoff import Backoff
from device_agent.state.enrollment import MqttLogin

log = logging.getLogger(__name__)

QOS = 1
STABLE_CONNECTION_S = 30.0
CONNACK_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
MAX_QUEUED_MESSAGES = 200
MAX_OUTBOX = 200
STOP_TIMEOUT_S = 10.0


class MqttLink:
    def __init__(
        self,
        *,
        login: MqttLogin,
        client_id: str,
        subscriptions: list[str],
        on_message: Callable[[str, bytes], None],
        hello: Callable[[], Hello],
        on_state: Callable[[bool], None],
        backoff: Backoff,
        keepalive_s: int,
        ca_file: Path | None = None,
    ) -> None:
        self.login = login
        self._subscriptions = subscriptions
        self._on_message_cb = on_message
        self._hello = hello
        self._on_state = on_state
        self._backoff = backoff
        self._keepalive_s = keepalive_s
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        self._client.username_pw_set(login.username, login.password)
        self._client.connect_timeout = CONNECT_TIMEOUT_S
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        if login.tls:
            self._client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._outbox: deque[bytes] = deque(maxlen=MAX_OUTBOX)
        self._changed = threading.Condition()
        self._connected = False
        self._lost = False
        self._stop = threading.Event()
        self.connects = 0
        self._thread = threading.Thread(
            target=self._supervise, name="fleet-agent-mqtt", daemon=True
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(STOP_TIMEOUT_S)

    def publish(self, message: StatusMessage) -> None:
        """QoS 1 on the status topic; kept by paho (bounded) while disconnected."""
        self._outbox.append(messages.encode(message))
        self._flush()

    # -- paho callbacks (paho's network thread) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("the broker refused the login of %s: %s", self.login.username, reason)
            return
        client.subscribe([(topic, QOS) for topic in self._subscriptions])
        client.publish(self.login.status_topic, messages.encode(self._hello()), qos=QOS)
        self.connects += 1
        log.info(
            "connected to %s (session %s)",
            self.login.url,
            "resumed" if flags.session_present else "new",
        )
        with self._changed:
            self._connected = True
            self._changed.notify_all()
        self._on_state(True)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was_connected = self._connected
        with self._changed:
            self._connected, self._lost = False, True
            self._changed.notify_all()
        if was_connected:
            if self._stop.is_set():
                log.info("disconnected from %s", self.login.url)
            else:
                log.warning("connection to %s lost: %s", self.login.url, reason)
            self._on_state(False)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message_cb(message.topic, bytes(message.payload))

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        for topic, reason in zip(self._subscriptions, reasons, strict=False):
            if reason.is_failure:
                log.error("the broker refused the subscription to %s: %s", topic, reason)

    # -- supervisor thread ----------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # the supervisor is connecting; it flushes when done
        try:
            while self._outbox:
                self._client.publish(self.login.status_topic, self._outbox.popleft(), qos=QOS)
        finally:
            self._lock.release()

    def _connect(self, first: bool) -> bool:
        with self._lock:
            with self._changed:
                self._lost = False
            try:
                if first:
                    self._client.connect(self.login.host, self.login.port, self._keepalive_s)
                else:
                    self._client.reconnect()
            except (OSError, ValueError) as error:
                log.warning("cannot connect to %s: %s", self.login.url, error)
                return False
            self._client.loop_start()
        self._flush()  # after releasing: see the module docstring
        return True

    def _wait_connected(self) -> bool:
        with self._changed:
            self._changed.wait_for(
                lambda: self._connected or self._lost or self._stop.is_set(), CONNACK_TIMEOUT_S
            )
            return self._connected

    def _wait_lost(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._lost or self._stop.is_set())

    def _end_session(self) -> None:
        with self._lock:
            self._client.disconnect()
            self._client.loop_stop()

    def _supervise(self) -> None:
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            if self._connect(first):
                if self._wait_connected():
                    self._wait_lost()
                self._end_session()
            first = False
            if self._stop.is_set():
                break
            if time.monotonic() - started >= STABLE_CONNECTION_S:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("reconnecting to %s in %.1f s", self.login.url, delay)
            self._stop.wait(delay)
