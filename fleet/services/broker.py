"""The service layer's view of the MQTT broker: device logins and publishing.

``FLEET_MQTT_AUTH`` chooses the broker: ``dynsec`` (default) is :class:`MosquittoBroker`;
``http`` is :class:`~fleet.services.http_broker.HttpAuthBroker` (the broker asks fleet).

:class:`MosquittoBroker` is the real one (mosquitto's dynamic security plus one publisher
connection per process); it connects lazily, on first use. Without ``FLEET_MQTT_URL`` every
call raises :class:`BrokerUnavailableError` with a message saying what to configure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from fleet.config import Settings
from fleet.credentials import SecretHasher
from fleet.db.engine import Database
from fleet.mqtt import provisioning
from fleet.mqtt.broker_url import parse_broker_url
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.errors import BrokerError, BrokerUnavailableError
from fleet.mqtt.publisher import Publication, Publisher, publisher_state
from fleet.services.broker_login import (
    SERVER_USERNAME,
    StatusHandler,
    server_password,
    start_server_publisher,
)
from fleet.services.http_broker import HttpAuthBroker

log = logging.getLogger(__name__)


__all__ = [
    "SERVER_USERNAME",
    "Broker",
    "BrokerLink",
    "BrokerProvider",
    "BrokerUnavailableError",
    "HttpAuthBroker",
    "MosquittoBroker",
    "NoBroker",
    "Publication",
    "server_password",
]


class Broker(Protocol):
    device_url: str

    def provision_device(self, device_id: str, username: str, password: str) -> None: ...
    def disable_device(self, username: str) -> None: ...
    def enable_device(self, username: str) -> None: ...
    def delete_device(self, device_id: str, username: str) -> None: ...
    def publish(self, publications: Sequence[Publication]) -> None: ...
    def close(self) -> None: ...


class MosquittoBroker:
    def __init__(
        self,
        settings: Settings,
        hasher: SecretHasher,
        on_status: StatusHandler | None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        if not settings.mqtt_url:
            raise BrokerUnavailableError(
                "no MQTT broker is configured: set FLEET_MQTT_URL, FLEET_MQTT_ADMIN_USERNAME "
                "and FLEET_MQTT_ADMIN_PASSWORD"
            )
        self.settings = settings
        self.address = parse_broker_url(settings.mqtt_url, ca_file=settings.mqtt_ca_file or None)
        self.device_url = settings.mqtt_device_url or settings.mqtt_url
        self._password = server_password(hasher)
        self._on_status = on_status
        self._on_reconnect = on_reconnect
        self._lock = threading.Lock()
        self._admin: DynsecAdmin | None = None
        self._publisher: Publisher | None = None

    def _connected(self) -> tuple[DynsecAdmin, Publisher]:
        with self._lock:
            if self._admin is None:
                self._admin = DynsecAdmin(
                    self.address,
                    self.settings.mqtt_admin_username,
                    self.settings.mqtt_admin_password,
                ).start()
                self._bind_device_client_ids(self._admin)
            if self._publisher is None:
                try:
                    self._publisher = self._new_publisher()
                except BrokerUnavailableError:
                    # First start, or a changed secret key: (re)create our login. Not done on
                    # every start: setting its password kicks the other workers' connections.
                    provisioning.provision_server_login(
                        self._admin, SERVER_USERNAME, self._password
                    )
                    self._publisher = self._new_publisher()
            return self._admin, self._publisher

    @staticmethod
    def _bind_device_client_ids(admin: DynsecAdmin) -> None:
        """Upgrade path: device logins made before client-id binding get bound now."""
        try:
            provisioning.bind_device_client_ids(admin)
        except BrokerError as error:  # the next process start tries again
            log.warning("could not bind device logins to their client ids: %s", error)

    def _new_publisher(self) -> Publisher:
        return start_server_publisher(
            self.settings, self.address, self._password, self._on_status, self._on_reconnect
        )

    def start(self) -> None:
        self._connected()

    def provision_device(self, device_id: str, username: str, password: str) -> None:
        admin, _ = self._connected()
        provisioning.provision_device(admin, device_id, username, password)

    def disable_device(self, username: str) -> None:
        admin, _ = self._connected()
        provisioning.disable_device(admin, username)

    def enable_device(self, username: str) -> None:
        admin, _ = self._connected()
        provisioning.enable_device(admin, username)

    def delete_device(self, device_id: str, username: str) -> None:
        admin, _ = self._connected()
        provisioning.delete_device(admin, device_id, username)

    def publish(self, publications: Sequence[Publication]) -> None:
        if publications:
            _, publisher = self._connected()
            publisher.publish_many(publications)

    def connection_state(self) -> tuple[str, str]:
        """("connected" | "disconnected" | "not connected yet", a line saying where and why)."""
        return publisher_state(self._publisher, self.address.url)

    def close(self) -> None:
        with self._lock:
            for part in (self._publisher, self._admin):
                if part is not None:
                    try:
                        part.close()
                    except Exception:  # closing is best effort
                        log.debug("error closing the broker connection", exc_info=True)
            self._admin = self._publisher = None


class NoBroker:
    """Stands in when no broker is configured; says so on use."""

    device_url = ""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _refuse(self, *_: object) -> None:
        raise BrokerUnavailableError(self.reason)

    def connection_state(self) -> tuple[str, str]:
        return "not configured", self.reason

    provision_device = disable_device = enable_device = delete_device = publish = _refuse

    def close(self) -> None:
        pass


BrokerProvider = Callable[[], Broker]


class BrokerLink:
    """The process's one broker, made on first use: no connection opens before one is needed.

    Its :meth:`get` is the :data:`BrokerProvider` the delivery and device services are built
    with. The broker calls back into what is built after it (a device's status message, a
    reconnect), so those handlers subscribe with :meth:`listen` where the services are wired;
    a broker given ready-made (a test's) has its own wiring and hears nothing from here.
    """

    def __init__(
        self,
        settings: Settings,
        hasher: SecretHasher,
        broker: Broker | None = None,
        *,
        listen_status: bool = True,
        db: Database | None = None,
    ) -> None:
        """``db``: where ``FLEET_MQTT_AUTH=http`` keeps the device logins (needed in that mode)."""
        self.settings = settings
        self.hasher = hasher
        self.db = db
        self.broker = broker
        # Whether this process hears device status (web workers do; a one-off command must
        # not: it would take its share of the status stream and exit with it unhandled).
        self.listen_status = listen_status
        self._on_status: StatusHandler | None = None
        self._on_reconnect: Callable[[], None] | None = None

    def listen(self, on_status: StatusHandler, on_reconnect: Callable[[], None]) -> None:
        """What the broker, once made, calls with a device's status and after a reconnect."""
        self._on_status, self._on_reconnect = on_status, on_reconnect

    def get(self) -> Broker:
        if self.broker is None:
            if self.settings.mqtt_url and self.settings.mqtt_auth == "http":
                if self.db is None:
                    raise BrokerUnavailableError("FLEET_MQTT_AUTH=http needs the database")
                self.broker = HttpAuthBroker(
                    self.settings,
                    self.hasher,
                    self.db,
                    self._on_status if self.listen_status else None,
                    on_reconnect=self._on_reconnect,
                )
            elif self.settings.mqtt_url:
                self.broker = MosquittoBroker(
                    self.settings,
                    self.hasher,
                    self._on_status if self.listen_status else None,
                    on_reconnect=self._on_reconnect,
                )
            else:
                self.broker = NoBroker(
                    "no MQTT broker is configured: set FLEET_MQTT_URL, "
                    "FLEET_MQTT_ADMIN_USERNAME and FLEET_MQTT_ADMIN_PASSWORD"
                )
        return self.broker

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
