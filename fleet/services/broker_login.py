"""The fleet server's own broker login, shared by every broker kind (``broker.py``,
``http_broker.py``) and by the answers of ``mqtt_auth.py``."""

from __future__ import annotations

from collections.abc import Callable

from fleet.config import Settings
from fleet.credentials import SecretHasher
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.connection import MQTT_5
from fleet.mqtt.publisher import Publisher

SERVER_USERNAME = "fleet-server"
STATUS_SHARE_GROUP = "fleet-server"
StatusHandler = Callable[[str, bytes], None]


def server_password(hasher: SecretHasher) -> str:
    """The server's own broker password, derived so every server of a cluster agrees on it."""
    return hasher.hash("fleet mqtt server login v1")


def start_server_publisher(
    settings: Settings,
    address: BrokerAddress,
    password: str,
    on_status: StatusHandler | None,
    on_reconnect: Callable[[], None] | None,
) -> Publisher:
    """The server's own connection, for either broker kind: ``fleet-server`` on the protocol
    ``Settings.mqtt_protocol_version`` names, sharing the status stream (``$share``) with the
    other servers where that protocol has shared subscriptions (MQTT 5)."""
    protocol = settings.mqtt_protocol_version
    return Publisher(
        address,
        SERVER_USERNAME,
        password,
        on_status=on_status,
        on_reconnect=on_reconnect,
        share_group=STATUS_SHARE_GROUP if protocol == MQTT_5 else None,
        protocol=protocol,
    ).start()
