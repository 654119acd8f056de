"""What a broker in ``FLEET_MQTT_AUTH=http`` mode is told: may this login, client id, vhost,
queue or topic be used. Every answer comes from the database (``devices.mqtt_login_hash``, the
device's status), so a disable or delete is refused from the next question on.

- A device logs in only with its own username and password, only while it is active (pending,
  disabled or deleted: deny), and only with its own client id (``fleet-agent-{id}``).
- It may subscribe and publish exactly as ``fleet.mqtt.provisioning.device_acls`` allows under
  dynamic security; the server's own login (``fleet-server``, ``server_password``) gets
  ``server_acls``, with a client id of the publisher's form (``fleet-server-{12 hex}``).
- RabbitMQ's resources: the device's own subscription queues (``mqtt-subscription-{client
  id}qos0|qos1``: configure, read, write) and the MQTT exchange (read, write); nothing else.

Every input is bounded (``MqttQuestion.check``): a question out of bounds is a
``ValidationError`` and answered nothing. No password is logged; passwords are compared as
keyed hashes in constant time.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass

from sqlmodel import select

from fleet.db.devices import ACTIVE, Device
from fleet.domain.errors import ValidationError
from fleet.mqtt import acl_match, provisioning
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.topics import is_valid_device_id
from fleet.services.broker_login import SERVER_USERNAME, server_password
from fleet.services.context import ServiceContext

log = logging.getLogger(__name__)

MAX_USERNAME_CHARS = provisioning.MAX_USERNAME_LENGTH
MAX_PASSWORD_CHARS = 256
MAX_CLIENT_ID_CHARS = 256
MAX_VHOST_CHARS = 256
MAX_NAME_CHARS = 512
MAX_TOPIC_CHARS = acl_match.MAX_TOPIC_LENGTH
SERVER_CLIENT_ID = re.compile(r"fleet-server-[0-9a-f]{12}")
RABBITMQ_EXCHANGE = "amq.topic"
QUEUE_PREFIX = "mqtt-subscription-"
QUEUE_SUFFIXES = ("qos0", "qos1")
PERMISSIONS = ("configure", "read", "write")
RESOURCES = ("queue", "exchange", "topic")
# A throwaway hash compared when the login is unknown, so an unknown name costs what a
# known one does.
_NO_HASH = "0" * 64


def _bounded(label: str, value: str | None, limit: int, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise ValidationError(f"{label} is missing", code="InvalidMqttQuestion")
        return ""
    if len(value) > limit or "\0" in value:
        raise ValidationError(
            f"{label} is longer than {limit} characters or holds NUL", code="InvalidMqttQuestion"
        )
    return value


def _choice(label: str, value: str | None, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(
            f"{label} must be one of {', '.join(allowed)}", code="InvalidMqttQuestion"
        )
    return value


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a login is, and what it may do."""

    username: str
    client_id: str
    acls: frozenset[Acl]
    device_id: str | None  # None: the fleet server
    login_hash: str = ""  # the keyed hash its password must have


class MqttAuthService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._server_password_hash = ctx.hasher.hash(server_password(ctx.hasher))

    # -- the questions, broker-neutral ------------------------------------------------------

    def login(self, username: str | None, password: str | None, client_id: str | None) -> bool:
        """May ``username`` connect with ``password`` and ``client_id``?"""
        name = _bounded("username", username, MAX_USERNAME_CHARS)
        secret = _bounded("password", password, MAX_PASSWORD_CHARS, required=False)
        client = _bounded("client id", client_id, MAX_CLIENT_ID_CHARS, required=False)
        if not client:
            # Not an MQTT login (RabbitMQ asks for its management users too): not ours.
            return False
        found = self._principal(name, client)
        if found is None:
            self.ctx.hasher.matches(secret, _NO_HASH)  # the same work as a known login
            return False
        ok = self.ctx.hasher.matches(secret, found.login_hash)
        if not ok:
            log.info("MQTT login refused for %r (client id %r): wrong password", name, client)
        return ok

    def may_publish(self, username: str | None, client_id: str | None, topic: str | None) -> bool:
        found = self._asked(username, client_id)
        wanted = _bounded("topic", topic, MAX_TOPIC_CHARS)
        return found is not None and acl_match.decide(
            found.acls, AclType.PUBLISH_CLIENT_SEND, wanted
        )

    def may_subscribe(
        self, username: str | None, client_id: str | None, topic_filter: str | None
    ) -> bool:
        found = self._asked(username, client_id)
        wanted = _bounded("topic filter", topic_filter, MAX_TOPIC_CHARS)
        return found is not None and acl_match.decide(found.acls, AclType.SUBSCRIBE_PATTERN, wanted)

    # -- RabbitMQ's questions (rabbitmq_auth_backend_http) ----------------------------------

    def may_use_vhost(self, username: str | None, client_id: str | None, vhost: str | None) -> bool:
        found = self._asked(username, client_id)
        asked = _bounded("vhost", vhost, MAX_VHOST_CHARS)
        return found is not None and asked == self.ctx.settings.mqtt_vhost

    def may_use_resource(
        self,
        username: str | None,
        client_id: str | None,
        vhost: str | None,
        resource: str | None,
        name: str | None,
        permission: str | None,
    ) -> bool:
        kind = _choice("resource", resource, RESOURCES)
        what = _choice("permission", permission, PERMISSIONS)
        asked_name = _bounded("name", name, MAX_NAME_CHARS)
        if not self.may_use_vhost(username, client_id, vhost):
            return False
        client = str(client_id)
        if kind == "queue":
            return asked_name in {f"{QUEUE_PREFIX}{client}{suffix}" for suffix in QUEUE_SUFFIXES}
        if kind == "exchange":
            return asked_name == RABBITMQ_EXCHANGE and what in ("read", "write")
        return False  # "topic" comes to the topic path

    def may_use_topic(
        self,
        username: str | None,
        client_id: str | None,
        vhost: str | None,
        exchange: str | None,
        permission: str | None,
        routing_key: str | None,
    ) -> bool:
        """RabbitMQ's topic question: ``write`` is a publish, ``read`` a subscription, each
        with the MQTT topic as a routing key."""
        what = _choice("permission", permission, ("read", "write"))
        asked_exchange = _bounded("name", exchange, MAX_NAME_CHARS)
        key = _bounded("routing key", routing_key, MAX_TOPIC_CHARS)
        if asked_exchange != RABBITMQ_EXCHANGE or not self.may_use_vhost(
            username, client_id, vhost
        ):
            return False
        topic = acl_match.from_routing_key(key)
        if what == "write":
            return self.may_publish(username, client_id, topic)
        return self.may_subscribe(username, client_id, topic)

    # -- who asks ---------------------------------------------------------------------------

    def _asked(self, username: str | None, client_id: str | None) -> Principal | None:
        name = _bounded("username", username, MAX_USERNAME_CHARS)
        client = _bounded("client id", client_id, MAX_CLIENT_ID_CHARS)
        return self._principal(name, client)

    def _principal(self, username: str, client_id: str) -> Principal | None:
        """The login ``username`` as it is now, when ``client_id`` is its own; else None."""
        if username == SERVER_USERNAME:
            if SERVER_CLIENT_ID.fullmatch(client_id) is None:
                return None
            return Principal(
                username,
                client_id,
                provisioning.server_acls(),
                None,
                self._server_password_hash,
            )
        if not is_valid_device_id(username) or not hmac.compare_digest(
            client_id, provisioning.device_client_id(username)
        ):
            return None
        with self.ctx.db.session() as s:
            device = s.exec(
                select(Device.device_id, Device.status, Device.mqtt_login_hash).where(
                    Device.device_id == username, Device.mqtt_username == username
                )
            ).first()
        if device is None or device[1] != ACTIVE or device[2] is None:
            return None
        return Principal(
            username, client_id, provisioning.device_acls(username), username, device[2]
        )
