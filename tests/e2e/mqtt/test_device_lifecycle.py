"""Disable, enable, new password, delete and provisioning again (real mosquitto)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from fleet.domain.errors import ConflictError, ValidationError
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.errors import DynsecNotFoundError
from fleet.mqtt.provisioning import (
    delete_device,
    device_role_name,
    disable_device,
    enable_device,
    provision_device,
    provision_server_login,
    set_device_password,
)
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e
KICK_WAIT_S = 2.0


def expected_device_acls(device_id: str) -> frozenset[Acl]:
    """The role a device must hold, written out here, not computed by the code under test."""
    own = f"fleet/v1/devices/{device_id}/#"
    return frozenset(
        {
            Acl(AclType.SUBSCRIBE_PATTERN, own, allow=True, priority=10),
            Acl(AclType.PUBLISH_CLIENT_RECEIVE, own, allow=True, priority=10),
            Acl(
                AclType.PUBLISH_CLIENT_SEND,
                f"fleet/v1/devices/{device_id}/status",
                allow=True,
                priority=10,
            ),
            Acl(AclType.PUBLISH_CLIENT_SEND, "#", allow=False, priority=0),
            Acl(AclType.PUBLISH_CLIENT_RECEIVE, "#", allow=False, priority=0),
            Acl(AclType.SUBSCRIBE_PATTERN, "#", allow=False, priority=0),
        }
    )


def test_disabled_device_is_kicked_and_cannot_connect_until_enabled(
    admin: DynsecAdmin, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    online = connect(login)

    disable_device(admin, login.username)
    assert online.disconnected.wait(scaled(KICK_WAIT_S)), "a connected device is kicked at once"
    refused = connect(login, expect_ok=False)
    assert refused.connack.is_failure
    assert str(refused.connack) == "Not authorized"
    assert admin.get_client(login.username).get("disabled") is True
    disable_device(admin, login.username)  # twice is fine

    enable_device(admin, login.username)
    connect(login)


def test_new_password_kicks_the_old_session_and_only_the_new_one_works(
    admin: DynsecAdmin, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    online = connect(login)

    set_device_password(admin, login.username, "the-new-password")
    assert online.disconnected.wait(scaled(KICK_WAIT_S))
    assert connect(login, expect_ok=False).connack.is_failure
    connect(dataclasses.replace(login, password="the-new-password"))


def test_delete_removes_login_and_role_and_can_be_repeated(
    admin: DynsecAdmin, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    online = connect(login)

    delete_device(admin, login.device_id, login.username)
    assert online.disconnected.wait(scaled(KICK_WAIT_S))
    assert connect(login, expect_ok=False).connack.is_failure
    with pytest.raises(DynsecNotFoundError):
        admin.get_client(login.username)
    with pytest.raises(DynsecNotFoundError):
        admin.get_role(device_role_name(login.device_id))
    delete_device(admin, login.device_id, login.username)


def test_provisioning_twice_converges(
    admin: DynsecAdmin, fresh_login: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = fresh_login()
    provision_device(admin, login.device_id, login.username, login.password)
    provision_device(admin, login.device_id, login.username, login.password)
    role = f"device-{login.device_id}"
    assert admin.role_acls(role) == expected_device_acls(login.device_id)
    connect(login)


def test_provisioning_repairs_a_half_made_or_tampered_device(
    admin: DynsecAdmin, fresh_login: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login, other = fresh_login(), fresh_login()
    rolename, other_role = device_role_name(login.device_id), device_role_name(other.device_id)
    # Half-way: the role exists with a wrong ACL set; the login holds another device's role.
    admin.create_role(rolename, [Acl(AclType.SUBSCRIBE_PATTERN, "#", allow=True, priority=50)])
    admin.create_role(other_role)
    admin.create_client(login.username, "old-password", roles=[(other_role, 5)])

    provision_device(admin, login.device_id, login.username, login.password)

    assert admin.role_acls(rolename) == expected_device_acls(login.device_id)
    roles = [role["rolename"] for role in admin.get_client(login.username)["roles"]]
    assert roles == [rolename]
    connect(login)
    admin.delete_role(other_role)


def test_a_login_fleet_does_not_manage_is_never_taken_over(
    admin: DynsecAdmin,
    broker: Mosquitto,
    fresh_login: Callable[[], Any],
    connect: Callable[..., Any],
) -> None:
    login = fresh_login()
    for provision in (
        lambda: provision_device(admin, login.device_id, broker.admin_username, "taken-over"),
        lambda: provision_server_login(admin, broker.admin_username, "taken-over"),
    ):
        with pytest.raises(ConflictError):
            provision()
    roles = admin.get_client(broker.admin_username)["roles"]
    assert [role["rolename"] for role in roles] == ["admin"]
    admin.list_clients()  # the admin login still works with its own password


def test_provisioning_again_keeps_a_disabled_login_disabled(
    admin: DynsecAdmin, device: Callable[[], Any], connect: Callable[..., Any]
) -> None:
    login = device()
    disable_device(admin, login.username)
    provision_device(admin, login.device_id, login.username, login.password)
    assert connect(login, expect_ok=False).connack.is_failure


@pytest.mark.parametrize(
    ("device_id", "username", "password"),
    [
        ("+", "u-plus", "pw"),
        ("#", "u-hash", "pw"),
        ("a/b", "u-slash", "pw"),
        ("a/#", "u-slash-hash", "pw"),
        ("", "u-empty", "pw"),
        ("pi\x00", "u-nul", "pw"),
        ("pi-ok", "", "pw"),
        ("pi-ok", "u\nnewline", "pw"),
        ("pi-ok", "u" * 257, "pw"),
        ("pi-ok", "u-no-password", ""),
    ],
)
def test_a_bad_login_never_reaches_the_broker(
    admin: DynsecAdmin, device_id: str, username: str, password: str
) -> None:
    before = admin.list_clients()
    with pytest.raises(ValidationError):
        provision_device(admin, device_id, username, password)
    assert admin.list_clients() == before
