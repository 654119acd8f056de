"""The fleet server's side of MQTT, played by a test: publish (retained, QoS 1) to a device's
topics with the server's broker login, and read what the device says on its status topic.

Every wait is on a condition, with a deadline scaled by ``FLEET_TEST_TIME_SCALE``. A test that
must tell a new status from an earlier one takes ``marker()`` first and waits ``since`` it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.timing import DEFAULT_WAIT_S, scaled

RECONNECT_DELAY_S = 0.1  # the watcher's own reconnect pace, not a wait


class ServerSide:
    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"srv-{secrets.token_hex(4)}"
        )
        self.client.username_pw_set(username, password)
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each status, in the same order
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        self._subscribed = False
        self.subscriptions = 0  # SUBACKs received: one per (re)connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(RECONNECT_DELAY_S, RECONNECT_DELAY_S)  # type: ignore[arg-type]
        self.client.connect(host, port)
        self.client.loop_start()
        self.wait_subscribed(after=0)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        """(Re)subscribe on every connect: a restarted broker may have lost the session."""
        client.subscribe("fleet/v1/devices/+/status", qos=1)

    def _on_disconnect(self, *_: Any) -> None:
        with self._cond:
            self._subscribed = False
            self._cond.notify_all()

    def _on_subscribe(self, *_: Any) -> None:
        with self._cond:
            self._subscribed = True
            self.subscriptions += 1
            self._cond.notify_all()

    def wait_subscribed(self, after: int) -> None:
        """Until subscribed by a SUBACK later than the first ``after`` ones: a test that saw
        the broker go away passes the count it read before, so an old SUBACK cannot count."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._subscribed and self.subscriptions > after, scaled(DEFAULT_WAIT_S)
            ):
                raise TimeoutError(f"the server login did not subscribe (after {after} SUBACKs)")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[3]
        with self._cond:
            self.statuses.append((device, json.loads(message.payload)))
            self.arrivals.append(time.monotonic())
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, device_id: str, topic: str, payload: bytes, retain: bool = True) -> None:
        info = self.client.publish(f"fleet/v1/devices/{device_id}/{topic}", payload, 1, retain)
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._acked, scaled(DEFAULT_WAIT_S)):
                raise TimeoutError("no PUBACK")

    def said(self, device_id: str, since: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return self._said_locked(device_id, since)

    def marker(self) -> int:
        """How many statuses arrived so far: ``wait_for(..., since=marker)`` looks at later ones."""
        with self._cond:
            return len(self.statuses)

    def wait_for(
        self,
        device_id: str,
        match: Callable[[dict[str, Any]], bool],
        timeout_s: float = DEFAULT_WAIT_S,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first status of ``device_id`` after the first ``since`` that ``match`` accepts;
        ``timeout_s`` is unscaled."""
        deadline = time.monotonic() + scaled(timeout_s)
        with self._cond:
            while True:
                for device, status in self.statuses[since:]:
                    if device == device_id and match(status):
                        return status
                left = deadline - time.monotonic()
                if left <= 0:
                    said = self._said_locked(device_id, since)
                    raise TimeoutError(f"{device_id} said only {said}")
                self._cond.wait(left)

    def wait_for_many(
        self,
        device_id: str,
        match: Callable[[dict[str, Any]], bool],
        count: int,
        since: int = 0,
        timeout_s: float = DEFAULT_WAIT_S,
    ) -> list[tuple[float, dict[str, Any]]]:
        """The first ``count`` matching statuses after ``since``, each with its arrival time."""
        deadline = time.monotonic() + scaled(timeout_s)
        with self._cond:
            while True:
                found = [
                    (arrival, status)
                    for (device, status), arrival in zip(
                        self.statuses[since:], self.arrivals[since:], strict=True
                    )
                    if device == device_id and match(status)
                ]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    said = self._said_locked(device_id, since)
                    raise TimeoutError(f"{device_id}: {len(found)} of {count}, said {said}")
                self._cond.wait(left)

    def _said_locked(self, device_id: str, since: int) -> list[dict[str, Any]]:
        return [status for device, status in self.statuses[since:] if device == device_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
