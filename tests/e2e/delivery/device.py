"""A test device over the real network: HTTP enrollment, a real MQTT session, real envelopes.

It does what docs/protocol.md says an agent does, in the fewest lines, so that these tests
prove the server side against the real broker and registry (the agent itself has its own
end-to-end tests).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from device_agent.protocol.envelope import EnvelopeError, Opened, open_envelope
from device_agent.protocol.keys import ed25519_public_from_b64, public_key_b64
from fleet.mqtt.provisioning import device_client_id
from tests.support.timing import DEFAULT_WAIT_S, scaled

HTTP_TIMEOUT_S = 30.0  # unscaled; a bound on a failure


@dataclass
class WireDevice:
    device_id: str
    server_url: str
    x25519: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    ed25519: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    enrollment: dict[str, Any] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    credentials: dict[str, Any] | None = None
    versions: dict[str, int] = field(default_factory=lambda: {"credentials": 0, "command": 0})
    # MQTT 5 to mosquitto; 3.1.1 (the agent's) to RabbitMQ 3.10, which speaks nothing newer.
    protocol: int = mqtt.MQTTv5
    online: bool = False  # connected right now (paho reconnects on its own after a drop)
    disconnects: int = 0

    def enroll(self, secret: str) -> requests.Response:
        answer = requests.post(
            f"{self.server_url}/api/v1/enroll",
            timeout=scaled(HTTP_TIMEOUT_S),
            json={
                "deviceId": self.device_id,
                "enrollmentSecret": secret,
                "x25519PublicKey": public_key_b64(self.x25519.public_key()),
                "ed25519PublicKey": public_key_b64(self.ed25519.public_key()),
            },
        )
        if answer.status_code == 201:
            self.enrollment = answer.json()
        return answer

    # -- MQTT ------------------------------------------------------------------------------
    def connect(self, *, auto_ack: bool = True) -> mqtt.ReasonCode:
        self.auto_ack = auto_ack
        login = self.enrollment["mqtt"]
        host, port = login["url"].removeprefix("mqtt://").split(":")
        self._cond = threading.Condition()
        self._connack: Any = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=device_client_id(self.device_id),  # the one its login is bound to
            protocol=self.protocol,
        )
        client.username_pw_set(login["username"], login["password"])
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        client.connect(host, int(port))
        client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connack is not None, scaled(DEFAULT_WAIT_S))
        if self._connack is not None and not self._connack.is_failure:
            topics = login["topics"]
            client.subscribe(topics["credentials"], qos=1)
            client.subscribe(topics["commands"], qos=1)
            self.say(type="hello", versions=self.versions)
        return self._connack

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._cond:
            self._connack = reason
            self.online = not reason.is_failure
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        with self._cond:
            if self.online:
                self.disconnects += 1
            self.online = False
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            if msg.payload:
                self._accept(bytes(msg.payload))
            self._cond.notify_all()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def say(self, **message: Any) -> None:
        topic = self.enrollment["mqtt"]["topics"]["status"]
        self.client.publish(topic, json.dumps(message).encode(), qos=1)

    def open(self, data: bytes, kind: str = "credentials") -> Opened:
        return open_envelope(
            data,
            device_id=self.device_id,
            device_private_key=self.x25519,
            server_public_key=ed25519_public_from_b64(self.enrollment["serverSigningKey"]),
            last_version=self.versions[kind],
        )

    def _accept(self, data: bytes) -> None:
        try:
            opened = open_envelope(
                data,
                device_id=self.device_id,
                device_private_key=self.x25519,
                server_public_key=ed25519_public_from_b64(self.enrollment["serverSigningKey"]),
                last_version=0,
            )
        except EnvelopeError as exc:
            self.refused.append(type(exc).__name__)
            return
        kind = opened.kind.value
        if opened.version <= self.versions[kind]:
            self.refused.append("StaleVersion")
            return
        self.versions[kind] = opened.version
        if kind == "credentials":
            self.credentials = opened.payload
        elif opened.payload.get("command") == "wipe":
            self.credentials = None
        if self.auto_ack:
            self.say(type="ack", kind=kind, version=opened.version)

    def wait_for(
        self, predicate: Callable[[], object], what: str, timeout: float = DEFAULT_WAIT_S
    ) -> None:
        """Wait until ``predicate`` (about what this device has received) holds; it is
        rechecked on every message. ``timeout`` is unscaled, as in ``timing.wait_until``."""
        limit = scaled(timeout)
        deadline = time.monotonic() + limit
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.device_id}: no {what} within {limit:g} s")
                self._cond.wait(left)
