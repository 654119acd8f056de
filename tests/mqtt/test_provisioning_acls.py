"""The ACLs given to device and server roles (pure part of fleet/mqtt/provisioning.py)."""

from __future__ import annotations

import pytest

from fleet.domain.errors import ValidationError
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.provisioning import device_acls, device_role_name, server_acls


def _allowed(acls: frozenset[Acl], acltype: AclType) -> set[str]:
    return {acl.topic for acl in acls if acl.acltype is acltype and acl.allow}


def test_device_may_only_use_its_own_topics() -> None:
    acls = device_acls("pi-1")
    assert _allowed(acls, AclType.SUBSCRIBE_PATTERN) == {"fleet/v1/devices/pi-1/#"}
    assert _allowed(acls, AclType.PUBLISH_CLIENT_RECEIVE) == {"fleet/v1/devices/pi-1/#"}
    assert _allowed(acls, AclType.PUBLISH_CLIENT_SEND) == {"fleet/v1/devices/pi-1/status"}
    assert _allowed(acls, AclType.SUBSCRIBE_LITERAL) == set()


def test_device_role_in_full() -> None:
    """Every entry, priorities included, written out (priority decides in mosquitto)."""
    assert device_acls("pi-1") == {
        Acl(AclType.SUBSCRIBE_PATTERN, "fleet/v1/devices/pi-1/#", allow=True, priority=10),
        Acl(AclType.PUBLISH_CLIENT_RECEIVE, "fleet/v1/devices/pi-1/#", allow=True, priority=10),
        Acl(AclType.PUBLISH_CLIENT_SEND, "fleet/v1/devices/pi-1/status", allow=True, priority=10),
        Acl(AclType.PUBLISH_CLIENT_SEND, "#", allow=False, priority=0),
        Acl(AclType.PUBLISH_CLIENT_RECEIVE, "#", allow=False, priority=0),
        Acl(AclType.SUBSCRIBE_PATTERN, "#", allow=False, priority=0),
    }
    assert device_role_name("pi-1") == "device-pi-1"


@pytest.mark.parametrize("acls", [device_acls("pi-1"), server_acls()])
def test_roles_deny_everything_else_below_their_allows(acls: frozenset[Acl]) -> None:
    """The broker's default lets a client receive anything it subscribed to: not ours."""
    for acltype in (
        AclType.PUBLISH_CLIENT_SEND,
        AclType.PUBLISH_CLIENT_RECEIVE,
        AclType.SUBSCRIBE_PATTERN,
    ):
        denies = [a for a in acls if a.acltype is acltype and not a.allow]
        assert [a.topic for a in denies] == ["#"]
        allows = [a for a in acls if a.acltype is acltype and a.allow]
        assert all(allow.priority > denies[0].priority for allow in allows)


def test_server_role() -> None:
    acls = server_acls()
    assert _allowed(acls, AclType.PUBLISH_CLIENT_SEND) == {
        "fleet/v1/devices/+/credentials",
        "fleet/v1/devices/+/commands",
    }
    assert _allowed(acls, AclType.SUBSCRIBE_PATTERN) == {
        "fleet/v1/devices/+/status",
        "$share/+/fleet/v1/devices/+/status",
    }
    assert _allowed(acls, AclType.PUBLISH_CLIENT_RECEIVE) == {"fleet/v1/devices/+/status"}


@pytest.mark.parametrize("device_id", ["+", "#", "a/#", "a/b", "", "x\x00"])
def test_no_role_for_a_bad_device_id(device_id: str) -> None:
    with pytest.raises(ValidationError):
        device_acls(device_id)
    with pytest.raises(ValidationError):
        device_role_name(device_id)


def test_acl_json_round_trip() -> None:
    acl = Acl(AclType.SUBSCRIBE_PATTERN, "a/#", allow=True, priority=3)
    assert acl.to_json() == {
        "acltype": "subscribePattern",
        "topic": "a/#",
        "allow": True,
        "priority": 3,
    }
    assert Acl.from_json(acl.to_json()) == acl
