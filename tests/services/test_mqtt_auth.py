"""FLEET_MQTT_AUTH=http: the device's MQTT password kept as a keyed hash, and the broker's
questions answered from the database (fleet/services/mqtt_auth.py, fleet/services/http_broker.py),
on SQLite and PostgreSQL. Publishing goes to the fake broker; the logins are the real code's."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from sqlmodel import select

from fleet.db.devices import Device
from fleet.domain.errors import ValidationError
from fleet.mqtt.errors import BrokerError
from fleet.services import Services
from fleet.services.broker_login import SERVER_USERNAME, server_password
from fleet.services.http_broker import RECLOSE_MARGIN_S, HttpAuthBroker
from fleet.services.mqtt_auth import MAX_PASSWORD_CHARS, MqttAuthService
from tests.support.http_logins import (
    HTTP_MODE,
    SERVER_CLIENT,
    HttpLogins,
    client,
    enroll,
    http_fleet,
)


@pytest.fixture
def fleet(make_services: Any) -> Services:
    return http_fleet(make_services)


@pytest.fixture
def auth(fleet: Services) -> MqttAuthService:
    return MqttAuthService(fleet.ctx)


def test_the_password_is_kept_as_a_keyed_hash_never_in_plain(fleet: Services) -> None:
    password = enroll(fleet, "rpi-0001")
    with fleet.ctx.db.session() as s:
        stored = s.exec(select(Device.mqtt_login_hash)).one()
    assert stored == fleet.ctx.hasher.hash(password)
    assert password not in (stored or "")


def test_a_device_logs_in_only_with_its_own_password_and_client_id(
    fleet: Services, auth: MqttAuthService
) -> None:
    password = enroll(fleet, "rpi-0001")
    other = enroll(fleet, "rpi-0002")
    assert auth.login("rpi-0001", password, client("rpi-0001"))
    assert not auth.login("rpi-0001", other, client("rpi-0001"))  # another device's password
    assert not auth.login("rpi-0001", password, client("rpi-0002"))  # another's client id
    assert not auth.login("rpi-0001", password, "fleet-agent-rpi-0001x")
    assert not auth.login("rpi-0001", "", client("rpi-0001"))
    assert not auth.login("nobody", password, client("nobody"))
    # A login with no client id is not an MQTT one (RabbitMQ's management users): refused.
    assert not auth.login("rpi-0001", password, None)


def test_pending_disabled_and_deleted_devices_are_refused_at_once(
    fleet: Services, auth: MqttAuthService
) -> None:
    pending = enroll(fleet, "rpi-0003", group="careful")
    assert not auth.login("rpi-0003", pending, client("rpi-0003"))
    fleet.devices.approve("rpi-0003", actor="t")
    assert auth.login("rpi-0003", pending, client("rpi-0003"))

    password = enroll(fleet, "rpi-0001")
    status_topic = "fleet/v1/devices/rpi-0001/status"
    assert auth.may_publish("rpi-0001", client("rpi-0001"), status_topic)
    fleet.devices.disable("rpi-0001", actor="t")
    assert not auth.login("rpi-0001", password, client("rpi-0001"))
    assert not auth.may_publish("rpi-0001", client("rpi-0001"), status_topic)
    assert not auth.may_use_vhost("rpi-0001", client("rpi-0001"), "/")
    fleet.devices.enable("rpi-0001", actor="t")
    assert auth.login("rpi-0001", password, client("rpi-0001"))  # same MQTT login as before
    fleet.devices.delete("rpi-0001", actor="t")
    assert not auth.login("rpi-0001", password, client("rpi-0001"))


def test_a_device_uses_exactly_its_own_topics(fleet: Services, auth: MqttAuthService) -> None:
    enroll(fleet, "rpi-0001")
    enroll(fleet, "rpi-0002")
    me = ("rpi-0001", client("rpi-0001"), "/", "amq.topic")
    assert auth.may_use_topic(*me, "read", "fleet.v1.devices.rpi-0001.credentials")
    assert auth.may_use_topic(*me, "read", "fleet.v1.devices.rpi-0001.#")
    assert auth.may_use_topic(*me, "write", "fleet.v1.devices.rpi-0001.status")
    assert not auth.may_use_topic(*me, "write", "fleet.v1.devices.rpi-0001.credentials")
    assert not auth.may_use_topic(*me, "read", "fleet.v1.devices.rpi-0002.credentials")
    assert not auth.may_use_topic(*me, "read", "fleet.v1.devices.*.credentials")
    assert not auth.may_use_topic(*me, "read", "#")
    assert not auth.may_use_topic(*me, "write", "fleet.v1.devices.rpi-0002.status")
    assert not auth.may_use_topic("rpi-0001", client("rpi-0001"), "/", "other", "write", "x")
    # Another device's client id on its own login: nothing.
    assert not auth.may_use_topic(
        "rpi-0001",
        client("rpi-0002"),
        "/",
        "amq.topic",
        "write",
        "fleet.v1.devices.rpi-0001.status",
    )


def test_rabbitmq_resources_are_the_devices_own_queues_and_the_exchange(
    fleet: Services, auth: MqttAuthService
) -> None:
    enroll(fleet, "rpi-0001")
    me = ("rpi-0001", client("rpi-0001"), "/")
    for permission in ("configure", "read", "write"):
        assert auth.may_use_resource(
            *me, "queue", "mqtt-subscription-fleet-agent-rpi-0001qos1", permission
        )
    assert not auth.may_use_resource(
        *me, "queue", "mqtt-subscription-fleet-agent-rpi-0002qos1", "read"
    )
    assert auth.may_use_resource(*me, "exchange", "amq.topic", "write")
    assert not auth.may_use_resource(*me, "exchange", "amq.topic", "configure")
    assert not auth.may_use_resource(*me, "exchange", "amq.direct", "write")
    assert not auth.may_use_resource(
        "rpi-0001", client("rpi-0001"), "other", "exchange", "amq.topic", "write"
    )
    assert not auth.may_use_vhost("rpi-0001", client("rpi-0001"), "other")
    with pytest.raises(ValidationError, match="permission"):
        auth.may_use_resource(*me, "queue", "q", "delete")


def test_the_server_login_gets_the_servers_acls(fleet: Services, auth: MqttAuthService) -> None:
    password = server_password(fleet.ctx.hasher)
    assert auth.login(SERVER_USERNAME, password, SERVER_CLIENT)
    assert not auth.login(SERVER_USERNAME, password + "x", SERVER_CLIENT)
    assert not auth.login(SERVER_USERNAME, password, "fleet-agent-rpi-0001")
    server = (SERVER_USERNAME, SERVER_CLIENT, "/", "amq.topic")
    assert auth.may_use_topic(*server, "write", "fleet.v1.devices.rpi-0001.credentials")
    assert auth.may_use_topic(*server, "write", "fleet.v1.devices.rpi-0001.commands")
    assert auth.may_use_topic(*server, "read", "fleet.v1.devices.*.status")
    assert not auth.may_use_topic(*server, "write", "fleet.v1.devices.rpi-0001.status")
    assert not auth.may_use_topic(*server, "read", "#")


def test_every_input_is_bounded(fleet: Services, auth: MqttAuthService) -> None:
    password = enroll(fleet, "rpi-0001")
    with pytest.raises(ValidationError, match="password"):
        auth.login("rpi-0001", "p" * (MAX_PASSWORD_CHARS + 1), client("rpi-0001"))
    with pytest.raises(ValidationError, match="username"):
        auth.login("u" * 300, password, client("rpi-0001"))
    with pytest.raises(ValidationError, match="client id"):
        auth.login("rpi-0001", password, "c" * 300)
    with pytest.raises(ValidationError, match="routing key"):
        auth.may_use_topic("rpi-0001", client("rpi-0001"), "/", "amq.topic", "read", "k" * 2000)
    with pytest.raises(ValidationError, match="NUL"):
        auth.login("rpi-0001", "a\0b", client("rpi-0001"))


def test_provisioning_an_unknown_device_fails_and_changes_nothing(fleet: Services) -> None:
    broker = fleet.broker
    assert isinstance(broker, HttpLogins)
    with pytest.raises(BrokerError, match="no device"):
        broker.logins.provision_device("rpi-0404", "rpi-0404", "fltm_x")


class FakeManagement:
    def __init__(self) -> None:
        self.closed: list[tuple[str, float]] = []
        self.fail = False

    def close_user_connections(self, username: str) -> int:
        self.closed.append((username, time.monotonic()))
        if self.fail:
            raise BrokerError("the management API is down")
        return 1


def test_disable_closes_the_connections_at_once_and_again_after_the_cache_ttl(
    make_services: Any,
) -> None:
    services: Services = make_services(**HTTP_MODE, mqtt_auth_cache_ttl_seconds=0)
    ctx = services.ctx
    broker = HttpAuthBroker(ctx.settings, ctx.hasher, ctx.db, on_status=None)
    management = FakeManagement()
    broker.management = management  # type: ignore[assignment]
    broker.disable_device("rpi-0001")
    broker.delete_device("rpi-0002", "rpi-0002")
    assert [name for name, _ in management.closed] == ["rpi-0001", "rpi-0002"]  # TTL 0: once

    ttl_broker = HttpAuthBroker(
        dataclasses.replace(ctx.settings, mqtt_auth_cache_ttl_seconds=1),
        ctx.hasher,
        ctx.db,
        on_status=None,
    )
    later = FakeManagement()
    ttl_broker.management = later  # type: ignore[assignment]
    started = time.monotonic()
    ttl_broker.disable_device("rpi-0001")
    assert [name for name, _ in later.closed] == ["rpi-0001"]
    deadline = time.monotonic() + 10
    while len(later.closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [name for name, _ in later.closed] == ["rpi-0001", "rpi-0001"]
    assert later.closed[1][1] - started >= 1 + RECLOSE_MARGIN_S - 0.05  # TTL + the margin
    ttl_broker.close()


def test_a_management_api_that_fails_does_not_fail_the_disable(make_services: Any) -> None:
    services: Services = make_services(**HTTP_MODE, mqtt_auth_cache_ttl_seconds=0)
    ctx = services.ctx
    broker = HttpAuthBroker(ctx.settings, ctx.hasher, ctx.db, on_status=None)
    management = FakeManagement()
    management.fail = True
    broker.management = management  # type: ignore[assignment]
    broker.disable_device("rpi-0001")  # the login is refused already: only logged
    assert len(management.closed) == 1


def test_without_a_management_url_nothing_is_closed(fleet: Services) -> None:
    broker = fleet.broker
    assert isinstance(broker, HttpLogins)
    assert broker.logins.management is None
    broker.logins.disable_device("rpi-0001")  # nothing to call, nothing raised
