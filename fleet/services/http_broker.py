"""The broker of ``FLEET_MQTT_AUTH=http``: nothing is provisioned on it; it asks fleet.

A device's MQTT password is kept as a keyed hash in ``devices.mqtt_login_hash`` (never the
password), and the broker's questions are answered from the database by
:class:`fleet.services.mqtt_auth.MqttAuthService` (the routes are ``fleet/api/mqtt_auth.py``).
Disable, enable and delete therefore change only the database, which the device service has
done by the time it calls here; what is left is the device's open connection. With RabbitMQ's
management API configured (``FLEET_MQTT_MANAGEMENT_URL``), :meth:`disable_device` and
:meth:`delete_device` close the device's connections at once, and once more after the broker's
answer cache has expired (``FLEET_MQTT_AUTH_CACHE_TTL_SECONDS`` + 1 s): a reconnect that a cached
"allow" let in meanwhile is closed then, and refused from then on.

The server's own connection is a :class:`~fleet.mqtt.publisher.Publisher` logging in as
``fleet-server`` with ``server_password``, on MQTT 3.1.1 or 5 (``Settings.mqtt_protocol_version``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import update
from sqlmodel import col

from fleet.config import Settings
from fleet.credentials import SecretHasher
from fleet.db.devices import Device
from fleet.db.engine import Database
from fleet.mqtt import provisioning
from fleet.mqtt.broker_url import parse_broker_url
from fleet.mqtt.errors import BrokerError, BrokerUnavailableError
from fleet.mqtt.publisher import Publication, Publisher, publisher_state
from fleet.mqtt.rabbitmq_management import RabbitManagement
from fleet.services.broker_login import StatusHandler, server_password, start_server_publisher

log = logging.getLogger(__name__)

RECLOSE_MARGIN_S = 1.0


class HttpAuthBroker:
    def __init__(
        self,
        settings: Settings,
        hasher: SecretHasher,
        db: Database,
        on_status: StatusHandler | None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        if not settings.mqtt_url:
            raise BrokerUnavailableError("no MQTT broker is configured: set FLEET_MQTT_URL")
        self.settings = settings
        self.hasher = hasher
        self.db = db
        self.address = parse_broker_url(settings.mqtt_url, ca_file=settings.mqtt_ca_file or None)
        self.device_url = settings.mqtt_device_url or settings.mqtt_url
        self._password = server_password(hasher)
        self._on_status = on_status
        self._on_reconnect = on_reconnect
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._timers: set[threading.Timer] = set()
        self.management = (
            RabbitManagement(
                settings.mqtt_management_url,
                settings.mqtt_management_username,
                settings.mqtt_management_password,
            )
            if settings.mqtt_management_url
            else None
        )

    # -- the server's connection ------------------------------------------------------------

    def _connected(self) -> Publisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = start_server_publisher(
                    self.settings, self.address, self._password, self._on_status, self._on_reconnect
                )
            return self._publisher

    def start(self) -> None:
        self._connected()

    def publish(self, publications: Sequence[Publication]) -> None:
        if publications:
            self._connected().publish_many(publications)

    def connection_state(self) -> tuple[str, str]:
        return publisher_state(self._publisher, self.address.url)

    # -- device logins: the database --------------------------------------------------------

    def provision_device(self, device_id: str, username: str, password: str) -> None:
        """Keep the keyed hash of the device's password; the broker asks fleet for it."""
        provisioning.validate_login(username, password)
        provisioning.device_role_name(device_id)  # the device-id rule
        with self.db.session() as s:
            changed = s.exec(
                update(Device)
                .where(col(Device.device_id) == device_id, col(Device.mqtt_username) == username)
                .values(mqtt_login_hash=self.hasher.hash(password))
            ).rowcount
        if changed != 1:
            raise BrokerError(f"no device {device_id!r} with MQTT login {username!r} to provision")

    def disable_device(self, username: str) -> None:
        """The device is disabled in the database already (refused from now on); its open
        connections are closed."""
        self._close_connections(username)

    def enable_device(self, username: str) -> None:
        """Nothing on the broker: the device's status in the database decides."""

    def delete_device(self, device_id: str, username: str) -> None:
        """The row goes with the device (the service deletes it); the connections close."""
        self._close_connections(username)

    def _close_connections(self, username: str) -> None:
        if self.management is None:
            return
        self._close_now(username)
        ttl = self.settings.mqtt_auth_cache_ttl_seconds
        if ttl > 0:
            timer = threading.Timer(ttl + RECLOSE_MARGIN_S, self._close_later, (username,))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)
            timer.start()

    def _close_now(self, username: str) -> None:
        assert self.management is not None
        try:
            self.management.close_user_connections(username)
        except BrokerError as error:  # the login is refused already; only the socket is left
            log.warning("could not close %s's broker connections: %s", username, error)

    def _close_later(self, username: str) -> None:
        try:
            self._close_now(username)
        finally:
            with self._lock:
                self._timers.discard(threading.current_thread())  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, set()
            publisher, self._publisher = self._publisher, None
        for timer in timers:
            timer.cancel()
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # closing is best effort
                log.debug("error closing the broker connection", exc_info=True)
