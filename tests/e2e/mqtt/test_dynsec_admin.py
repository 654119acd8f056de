"""The dynamic-security admin client against a real broker."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fleet.mqtt import dynsec_commands as cmd
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.errors import (
    BrokerTimeoutError,
    BrokerUnavailableError,
    DynsecCommandError,
    DynsecConflictError,
    DynsecNotFoundError,
)
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e
THREADS = 8
CALLS_PER_THREAD = 25
REFUSAL_MAX_S = 3.0


def test_clients_and_roles_round_trip(admin: DynsecAdmin) -> None:
    name = f"rt-{secrets.token_hex(4)}"
    acl = Acl(AclType.PUBLISH_CLIENT_SEND, f"x/{name}", allow=True, priority=2)
    admin.create_role(name, [acl])
    admin.add_role_acl(name, Acl(AclType.SUBSCRIBE_LITERAL, f"y/{name}", allow=False))
    admin.remove_role_acl(name, AclType.SUBSCRIBE_LITERAL, f"y/{name}")
    assert admin.role_acls(name) == {acl}

    admin.create_client(name, "pw", textname="round trip")
    admin.add_client_role(name, name, priority=3)
    assert admin.get_client(name)["roles"] == [{"rolename": name, "priority": 3}]
    assert name in admin.list_clients()
    admin.remove_client_role(name, name)
    assert admin.get_client(name)["roles"] == []

    admin.delete_client(name)
    admin.delete_role(name)
    assert name not in admin.list_clients()


def test_errors_name_the_command_and_are_typed(admin: DynsecAdmin) -> None:
    with pytest.raises(DynsecNotFoundError) as missing:
        admin.get_client("nobody-here")
    assert missing.value.command == "getClient"
    assert "getClient" in str(missing.value) and "Client not found" in str(missing.value)

    name = f"dup-{secrets.token_hex(4)}"
    admin.create_role(name)
    with pytest.raises(DynsecConflictError):
        admin.create_role(name)
    with pytest.raises(DynsecCommandError) as invalid:
        admin.add_role_acl(name, Acl(AclType.SUBSCRIBE_PATTERN, "a/#/b", allow=True))
    assert invalid.value.error == "Invalid ACL topic"
    admin.delete_role(name)


def test_a_batch_answers_each_command_in_order(admin: DynsecAdmin) -> None:
    name = f"batch-{secrets.token_hex(4)}"
    commands = [cmd.create_role(name), cmd.create_role(name), cmd.delete_role(name)]
    responses = admin.execute(commands)
    assert [r["command"] for r in responses] == ["createRole", "createRole", "deleteRole"]
    assert [r.get("error") for r in responses] == [None, "Role already exists", None]


def test_one_connection_serves_many_threads(admin: DynsecAdmin, device: Callable[[], Any]) -> None:
    logins = [device() for _ in range(THREADS)]

    def work(login: Any) -> set[str]:
        return {admin.get_client(login.username)["username"] for _ in range(CALLS_PER_THREAD)}

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, logins))
    assert results == [{login.username} for login in logins]


def test_a_wrong_admin_password_fails_fast(
    broker: Mosquitto, address: BrokerAddress, fast_reconnect: dict[str, float]
) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as refused:
        DynsecAdmin(address, broker.admin_username, "wrong", **fast_reconnect).start()
    assert time.monotonic() - started < scaled(REFUSAL_MAX_S)
    assert "refused" in str(refused.value)


def test_no_broker_is_a_clear_error(
    own_broker: Mosquitto, fast_reconnect: dict[str, float]
) -> None:
    address = BrokerAddress(own_broker.host, own_broker.port)
    login = (own_broker.admin_username, own_broker.admin_password)
    with DynsecAdmin(address, *login, **fast_reconnect) as admin:
        own_broker.kill()

        def refused() -> bool:  # true once paho has noticed the connection is gone
            try:
                admin.list_clients()
            except BrokerUnavailableError:
                return True
            return False

        wait_until(refused, "BrokerUnavailableError after the broker was killed")


def test_no_answer_is_a_timeout_naming_the_command(
    address: BrokerAddress, device: Callable[[], Any], fast_reconnect: dict[str, float]
) -> None:
    """A login without rights on $CONTROL: the broker drops the command, nobody answers."""
    login = device()
    with (
        DynsecAdmin(
            address,
            login.username,
            login.password,
            client_id=login.client_id,  # the only one a device login is accepted with
            timeout_s=0.3,
            **fast_reconnect,
        ) as not_an_admin,
        pytest.raises(BrokerTimeoutError) as silent,
    ):
        not_an_admin.list_clients()
    assert "listClients" in str(silent.value)
