"""The fleet server's side of MQTT, played by a test: publish (retained, QoS 1) to a device's
topics with the server's broker login, and read what the device says on its status topic."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WAIT_S = 10.0
RECONNECT_DELAY_S = 0.1


class ServerSide:
    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"srv-{secrets.token_hex(4)}"
        )
        self.client.username_pw_set(username, password)
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._subscribed.clear()
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.reconnect_delay_set(RECONNECT_DELAY_S, RECONNECT_DELAY_S)  # type: ignore[arg-type]
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError("the server login could not connect and subscribe")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        """(Re)subscribe on every connect: a restarted broker may have lost the session."""
        self._subscribed.clear()
        client.subscribe("fleet/v1/devices/+/status", qos=1)

    def wait_subscribed(self) -> None:
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError("the server login did not subscribe again")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[3]
        with self._cond:
            self.statuses.append((device, json.loads(message.payload)))
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, device_id: str, topic: str, payload: bytes, retain: bool = True) -> None:
        info = self.client.publish(f"fleet/v1/devices/{device_id}/{topic}", payload, 1, retain)
        with self._cond:
            if not self._cond.wait_for(lambda: info.mid in self._acked, WAIT_S):
                raise TimeoutError("no PUBACK")

    def said(self, device_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [status for device, status in self.statuses if device == device_id]

    def wait_for(
        self, device_id: str, match: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for device, status in self.statuses:
                    if device == device_id and match(status):
                        return status
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{device_id} said only {self.said_locked(device_id)}")
                self._cond.wait(left)

    def said_locked(self, device_id: str) -> list[dict[str, Any]]:
        return [status for device, status in self.statuses if device == device_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
