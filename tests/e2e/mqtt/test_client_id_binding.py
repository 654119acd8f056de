"""Issue 12, defect 3: a device's broker login is bound to its own client id.

Before: device B, with its own valid login, connected with device A's client id; mosquitto
closed A's connection and handed B A's session. Now every device login is accepted only with
``fleet-agent-{device id}``, so B is refused (CONNACK "not authorised") and A stays connected.
Logins made before the binding existed are bound by ``bind_device_client_ids``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device_agent.protocol.topics import CLIENT_ID_PREFIX as AGENT_CLIENT_ID_PREFIX
from fleet.config import load_settings
from fleet.credentials import SecretHasher
from fleet.mqtt import dynsec_commands as cmd
from fleet.mqtt import topics
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.provisioning import (
    DEVICE_CLIENT_ID_PREFIX,
    ROLE_PRIORITY,
    bind_device_client_ids,
    device_acls,
    device_client_id,
    device_role_name,
    provision_device,
)
from fleet.services.broker import MosquittoBroker
from tests.e2e.mqtt.conftest import FAST_RECONNECT, WAIT_S, Login, MqttTestClient
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

# paho reports MQTT 3.1.1's return code 5 as MQTT 5's reason 135 too.
NOT_AUTHORISED = "Not authorized"
PROTOCOLS = [
    pytest.param(mqtt.MQTTv5, id="mqtt5"),
    pytest.param(mqtt.MQTTv311, id="mqtt311"),
]


def _still_connected(client: MqttTestClient, login: Login) -> None:
    """The connection is alive: not dropped, and the broker acknowledges a publish on it."""
    assert not client.disconnected.is_set(), f"{login.device_id} was disconnected"
    reason = client.publish(topics.status_topic(login.device_id), b"{}")
    if client.protocol == mqtt.MQTTv5:
        assert not reason.is_failure, reason
    assert not client.disconnected.is_set(), f"{login.device_id} was disconnected"


def _provision_unbound(admin: DynsecAdmin, login: Login) -> None:
    """A device login as provision_device made it before client ids were bound."""
    role = device_role_name(login.device_id)
    admin.run(cmd.create_role(role, sorted(device_acls(login.device_id), key=str)))
    admin.run(
        {
            "command": "createClient",
            "username": login.username,
            "password": login.password,
            "roles": [{"rolename": role, "priority": ROLE_PRIORITY}],
        }
    )


def test_the_bound_client_id_is_the_one_the_agent_uses() -> None:
    assert DEVICE_CLIENT_ID_PREFIX == AGENT_CLIENT_ID_PREFIX
    assert device_client_id("pump-7") == "fleet-agent-pump-7"


def test_a_new_device_login_is_bound_to_its_client_id(
    admin: DynsecAdmin, device: Callable[[], Login]
) -> None:
    login = device()
    assert admin.get_client(login.username).get("clientid") == device_client_id(login.device_id)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_another_device_cannot_take_over_a_client_id(
    device: Callable[[], Login], connect: Callable[..., MqttTestClient], protocol: int
) -> None:
    a, b = device(), device()
    a_client = connect(a, protocol)

    thief = connect(b, protocol, expect_ok=False, client_id=a.client_id)

    assert thief.connack is not None
    assert str(thief.connack) == NOT_AUTHORISED
    _still_connected(a_client, a)
    # B with its own id, and A again elsewhere after closing, still work.
    connect(b, protocol)
    a_client.close()
    _still_connected(connect(a, protocol), a)


def test_a_device_login_with_any_other_client_id_is_refused(
    device: Callable[[], Login], connect: Callable[..., MqttTestClient]
) -> None:
    login = device()
    other = connect(login, expect_ok=False, client_id=f"{login.client_id}-2")
    assert str(other.connack) == NOT_AUTHORISED


def _own_admin(broker: Mosquitto) -> DynsecAdmin:
    return DynsecAdmin(
        BrokerAddress(broker.host, broker.port),
        broker.admin_username,
        broker.admin_password,
        **FAST_RECONNECT,
    ).start()


def test_logins_made_before_binding_are_bound_by_the_upgrade(
    own_broker: Mosquitto,
    fresh_login: Callable[[], Login],
    connect: Callable[..., MqttTestClient],
) -> None:
    admin = _own_admin(own_broker)
    try:
        a, b, bound_already = fresh_login(), fresh_login(), fresh_login()
        for login in (a, b):
            _provision_unbound(admin, login)
        provision_device(admin, bound_already.device_id, bound_already.username, "pw-1")
        # The hole, as it was: B takes A's client id and A is thrown off.
        a_client = connect(a, to=own_broker)
        connect(b, to=own_broker, client_id=a.client_id)
        assert a_client.disconnected.wait(5), "the broker kept A: the hole is not reproduced"
        a_client.close()

        bound = bind_device_client_ids(admin)

        assert sorted(bound) == sorted([a.username, b.username])
        for login in (a, b):
            wanted = device_client_id(login.device_id)
            assert admin.get_client(login.username).get("clientid") == wanted
        a_client = connect(a, to=own_broker)
        thief = connect(b, to=own_broker, expect_ok=False, client_id=a.client_id)
        assert str(thief.connack) == NOT_AUTHORISED
        _still_connected(a_client, a)
        # Converged: nothing left to bind, and nobody is kicked by a second run.
        assert bind_device_client_ids(admin) == []
        _still_connected(a_client, a)
    finally:
        admin.close()


def test_provisioning_an_unbound_login_again_binds_it(
    own_broker: Mosquitto, fresh_login: Callable[[], Login]
) -> None:
    admin = _own_admin(own_broker)
    try:
        login = fresh_login()
        _provision_unbound(admin, login)

        provision_device(admin, login.device_id, login.username, login.password)

        client: dict[str, Any] = admin.get_client(login.username)
        assert client.get("clientid") == device_client_id(login.device_id)
    finally:
        admin.close()


def test_the_server_binds_old_logins_when_it_connects(
    own_broker: Mosquitto,
    fresh_login: Callable[[], Login],
    connect: Callable[..., MqttTestClient],
    tmp_path: Path,
) -> None:
    """The upgrade needs no command: the server's first use of the broker binds the logins."""
    admin = _own_admin(own_broker)
    server: MosquittoBroker | None = None
    try:
        old = fresh_login()
        _provision_unbound(admin, old)
        settings = load_settings(
            environ={}, overrides={"data_dir": tmp_path, **_lower(own_broker.fleet_env())}
        )
        server = MosquittoBroker(settings, SecretHasher(b"k" * 32), None)

        server.start()

        assert admin.get_client(old.username).get("clientid") == device_client_id(old.device_id)
        thief = connect(fresh_login(), to=own_broker, expect_ok=False, client_id=old.client_id)
        assert thief.connack is not None and thief.connack.is_failure
        connect(old, to=own_broker)
    finally:
        if server is not None:
            server.close()
        admin.close()


def _lower(env: dict[str, str]) -> dict[str, str]:
    return {key.removeprefix("FLEET_").lower(): value for key, value in env.items()}


def test_two_servers_binding_at_once_converge(
    own_broker: Mosquitto, fresh_login: Callable[[], Login]
) -> None:
    """Every worker of every server binds on its first connection: at once, all end bound."""
    admins = [_own_admin(own_broker) for _ in range(2)]
    try:
        logins = [fresh_login() for _ in range(6)]
        for login in logins:
            _provision_unbound(admins[0], login)
        barrier = threading.Barrier(len(admins))
        results: list[list[str]] = []

        def bind(admin: DynsecAdmin) -> None:
            barrier.wait()
            results.append(bind_device_client_ids(admin))

        threads = [threading.Thread(target=bind, args=(admin,)) for admin in admins]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(scaled(WAIT_S))

        assert len(results) == len(admins), "a binding pass did not finish"
        assert {name for result in results for name in result} == {x.username for x in logins}
        for login in logins:
            got = admins[1].get_client(login.username).get("clientid")
            assert got == device_client_id(login.device_id)
        assert bind_device_client_ids(admins[1]) == []
    finally:
        for admin in admins:
            admin.close()
