"""The fleet server's long-lived MQTT connection: publish to devices, hear their status.

- ``publish(topic, payload)`` sends at QoS 1, retained by default, and returns once the broker
  has acknowledged it (PUBACK), or raises ``BrokerTimeoutError``. While the connection is down
  paho keeps the message queued and sends it after reconnecting, so a publish that timed out
  may still arrive later: receivers must accept only versions newer than what they hold.
- Every device's status topic is subscribed (again after each reconnect); each message reaches
  ``on_status(device_id, payload)`` on paho's network thread, so keep that callback short
  (hand the work to a queue). Messages on topics that are not a valid device's status are
  dropped.

No database here: the service layer records what was published and what was acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet.mqtt import topics
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.connection import MQTT_5, Connection, ConnectionOwner, unique_client_id
from fleet.mqtt.errors import BrokerTimeoutError, BrokerUnavailableError, PublishRejectedError

log = logging.getLogger(__name__)

PUBLISH_QOS = 1
STATUS_QOS = 1
PUBLISH_TIMEOUT_S = 10.0
CLIENT_ID_PREFIX = "fleet-server"
# Kept by the broker while we reconnect, so device status sent meanwhile is not lost.
SESSION_EXPIRY_S = 300
# paho's outgoing queue is bounded: past this, publish fails at once instead of piling up.
MAX_QUEUED_MESSAGES = 10_000
# QoS 1 messages sent and not yet acknowledged at once (paho's default is 20, so a batch of 500
# envelopes waited for 25 round trips to the broker one after the other); the broker's own
# receive maximum (MQTT 5) still applies when it is lower.
MAX_INFLIGHT_MESSAGES = 1_000

StatusCallback = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    retain: bool = True


class _AckBook:
    """PUBACKs by message id. paho calls ``record`` holding its own lock, so ours is only ever
    taken briefly and never while calling into paho (no lock-order inversion)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._acked: dict[int, ReasonCode] = {}
        self._abandoned: set[int] = set()

    def record(self, mid: int, reason: ReasonCode) -> None:
        with self._cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            self._acked[mid] = reason
            self._cond.notify_all()

    def wait(self, mids: list[int], deadline: float) -> dict[int, ReasonCode]:
        """The acknowledgements that came before the deadline; the rest are given up on."""
        with self._cond:
            while not all(mid in self._acked for mid in mids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            acked = {mid: self._acked.pop(mid) for mid in mids if mid in self._acked}
            self._abandoned.update(mid for mid in mids if mid not in acked)
            return acked

    def abandon(self, mids: list[int]) -> None:
        with self._cond:
            for mid in mids:
                if self._acked.pop(mid, None) is None:
                    self._abandoned.add(mid)


class Publisher(ConnectionOwner):
    def __init__(
        self,
        address: BrokerAddress,
        username: str,
        password: str,
        *,
        on_status: StatusCallback | None = None,
        on_reconnect: Callable[[], None] | None = None,
        share_group: str | None = None,
        receive_retained_status: bool = False,
        client_id: str | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        protocol: str = MQTT_5,
        **connection_options: Any,
    ) -> None:
        """``share_group``: several servers subscribed with the same group name split the
        status stream between them (``$share/{group}/...``) instead of each getting all of it.
        ``receive_retained_status``: also get the retained status of every device on each
        (re)subscribe; off by default, as with many devices that is a flood on every reconnect.
        ``on_reconnect``: called (on a thread of its own) after every reconnection: a broker
        that restarted may have lost its retained messages and the hellos sent meanwhile.
        ``protocol``: MQTT 5, or 3.1.1 (RabbitMQ 3.10): no ``share_group`` there, so every
        server subscribed gets every status message, and no retain handling (a broker of
        3.1.1 sends what it retained for an exact topic only; ours is a wildcard filter).
        """
        if protocol != MQTT_5 and share_group:
            raise ValueError("shared subscriptions ($share) need MQTT 5")
        self._protocol = protocol
        self._on_status = on_status
        self._on_reconnect = on_reconnect
        self._connects = 0
        self._status_filter = (
            f"$share/{share_group}/{topics.ALL_STATUS_TOPICS}"
            if share_group
            else topics.ALL_STATUS_TOPICS
        )
        self._retain_handling = (
            SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
            if receive_retained_status
            else SubscribeOptions.RETAIN_DO_NOT_SEND
        )
        self._acks = _AckBook()
        self._connection = Connection(
            address,
            username,
            password,
            client_id=client_id or unique_client_id(CLIENT_ID_PREFIX),
            on_connected=self._subscribe,
            session_expiry_s=session_expiry_s,
            protocol=protocol,
            **connection_options,
        )
        client = self._connection.client
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.max_inflight_messages_set(MAX_INFLIGHT_MESSAGES)
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message

    # -- publishing -------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = True,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        self.publish_many([Publication(topic, payload, retain)], timeout_s=timeout_s)

    def publish_many(
        self, publications: Iterable[Publication], *, timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        """Publish all, then wait until the broker has acknowledged every one of them."""
        deadline = time.monotonic() + timeout_s
        mids: list[int] = []
        topics_by_mid: dict[int, str] = {}
        client = self._connection.client
        try:
            for publication in publications:
                # Not connected: paho queues QoS 1 messages and sends them after reconnecting,
                # so NO_CONN is not an error here; the deadline decides.
                info = client.publish(
                    publication.topic,
                    publication.payload,
                    qos=PUBLISH_QOS,
                    retain=publication.retain,
                )
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    raise BrokerUnavailableError(
                        f"{MAX_QUEUED_MESSAGES} messages already wait for the broker at "
                        f"{self._connection.address.url}: {self._connection.last_failure}"
                    )
                mids.append(info.mid)
                topics_by_mid[info.mid] = publication.topic
        except BaseException:
            self._acks.abandon(mids)
            raise
        acked = self._acks.wait(mids, deadline)
        rejected = {mid: reason for mid, reason in acked.items() if reason.is_failure}
        if rejected:
            mid, reason = next(iter(rejected.items()))
            raise PublishRejectedError(
                f"broker refused {len(rejected)} of {len(mids)} message(s), "
                f"e.g. on {topics_by_mid[mid]!r}: {reason}"
            )
        missing = [mid for mid in mids if mid not in acked]
        if missing:
            raise BrokerTimeoutError(
                f"{len(missing)} of {len(mids)} message(s) not acknowledged by the broker within "
                f"{timeout_s} s (e.g. on {topics_by_mid[missing[0]]!r}); "
                f"{self._connection.last_failure or 'connected'}"
            )

    def _handle_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._acks.record(mid, reason)

    # -- status -----------------------------------------------------------------------------

    def _subscribe(self, _client: mqtt.Client) -> None:
        self._connects += 1
        if self._connects > 1 and self._on_reconnect is not None:
            # Not on the network thread: the callback publishes and waits for PUBACKs.
            threading.Thread(
                target=self._reconnected, name="fleet-reconnected", daemon=True
            ).start()
        if self._on_status is None:
            return
        if self._protocol != MQTT_5:
            self._connection.subscribe(self._status_filter, qos=STATUS_QOS)
            return
        options = SubscribeOptions(qos=STATUS_QOS, retainHandling=self._retain_handling)
        self._connection.subscribe(self._status_filter, options=options)

    def _reconnected(self) -> None:
        try:
            if self._on_reconnect is not None:
                self._on_reconnect()
        except Exception:
            log.exception("the reconnect callback failed")

    def _handle_message(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        device_id = topics.device_id_from_status_topic(message.topic)
        if device_id is None or self._on_status is None:
            log.warning("ignoring a message on %r", message.topic)
            return
        try:
            self._on_status(device_id, bytes(message.payload))
        except Exception:
            # An exception escaping here would stop paho's network thread.
            log.exception("status callback failed for device %s", device_id)


def publisher_state(publisher: Publisher | None, where: str) -> tuple[str, str]:
    """A broker's publishing connection as the overview shows it: ("connected" | "disconnected"
    | "not connected yet", a line saying where and why). None: not made yet (it connects on
    first use)."""
    if publisher is None:
        return "not connected yet", f"{where}: connects on first use"
    if publisher.connected:
        return "connected", where
    return "disconnected", f"{where}: {publisher.last_failure}"
