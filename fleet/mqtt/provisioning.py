"""Broker logins for devices and for the fleet server, made through dynamic security.

Each device gets a role ``device-{id}`` and a login holding only that role:

- subscribe: only filters inside ``fleet/v1/devices/{id}/#`` (subscribePattern; ``#``,
  ``fleet/v1/devices/+/...`` and other devices' filters do not fit inside it and are refused);
- receive: only messages on ``fleet/v1/devices/{id}/#``; an explicit deny on ``#`` below it
  replaces mosquitto's default, which lets clients receive anything they are subscribed to;
- publish: only ``fleet/v1/devices/{id}/status``; everything else is denied explicitly too.

Each device login is bound to the client id ``fleet-agent-{id}`` (the agent's own): mosquitto
refuses the login from a connection using any other client id, so no device can present another
device's client id and take over its connection and session. Logins made before this binding
existed are bound by ``bind_device_client_ids`` (the server runs it when it connects).

The fleet server's publisher login gets the role ``fleet-server``: publish to every device's
credentials and commands topics, subscribe to and receive every device's status topic.

Every function converges: calling it again, or after a failure half-way, ends in the same state.
"""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from collections.abc import Callable
from typing import Any

from fleet.domain.errors import ConflictError, ValidationError
from fleet.mqtt import dynsec_commands as cmd
from fleet.mqtt import topics
from fleet.mqtt.acl import Acl, AclType
from fleet.mqtt.dynsec import DynsecAdmin, error_for
from fleet.mqtt.errors import DynsecConflictError, DynsecNotFoundError

log = logging.getLogger(__name__)

DEVICE_ROLE_PREFIX = "device-"
DEVICE_CLIENT_ID_PREFIX = topics.CLIENT_ID_PREFIX  # the agent's, from device_agent.protocol
SERVER_ROLE = "fleet-server"
ROLE_PRIORITY = 0
ALLOW_PRIORITY = 10
DENY_PRIORITY = 0
EVERYTHING = "#"
SHARED_STATUS_TOPICS = f"$share/+/{topics.ALL_STATUS_TOPICS}"
MAX_USERNAME_LENGTH = 256
CONTROL_CHARACTER = "Cc"

RolePredicate = Callable[[str], bool]


def validate_login(username: str, password: str) -> None:
    """A broker login: a username of printable characters, and some password."""
    if (
        not username
        or len(username) > MAX_USERNAME_LENGTH
        or any(unicodedata.category(ch) == CONTROL_CHARACTER for ch in username)
    ):
        raise ValidationError(
            f"invalid MQTT username {username!r}: use 1 to {MAX_USERNAME_LENGTH} printable "
            "characters",
            code="InvalidUsername",
        )
    if not password:
        raise ValidationError("an MQTT login needs a password", code="InvalidPassword")


def _deny_everything_else() -> tuple[Acl, ...]:
    return (
        Acl(AclType.PUBLISH_CLIENT_SEND, EVERYTHING, allow=False, priority=DENY_PRIORITY),
        Acl(AclType.PUBLISH_CLIENT_RECEIVE, EVERYTHING, allow=False, priority=DENY_PRIORITY),
        Acl(AclType.SUBSCRIBE_PATTERN, EVERYTHING, allow=False, priority=DENY_PRIORITY),
    )


def device_role_name(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + topics.validate_device_id(device_id)


def device_client_id(device_id: str) -> str:
    """The only client id a device's login is accepted with."""
    return DEVICE_CLIENT_ID_PREFIX + topics.validate_device_id(device_id)


def device_acls(device_id: str) -> frozenset[Acl]:
    own = topics.device_filter(device_id)
    return frozenset(
        (
            Acl(AclType.SUBSCRIBE_PATTERN, own, allow=True, priority=ALLOW_PRIORITY),
            Acl(AclType.PUBLISH_CLIENT_RECEIVE, own, allow=True, priority=ALLOW_PRIORITY),
            Acl(
                AclType.PUBLISH_CLIENT_SEND,
                topics.status_topic(device_id),
                allow=True,
                priority=ALLOW_PRIORITY,
            ),
            *_deny_everything_else(),
        )
    )


def server_acls() -> frozenset[Acl]:
    allow = ALLOW_PRIORITY
    return frozenset(
        (
            Acl(AclType.PUBLISH_CLIENT_SEND, topics.ALL_CREDENTIALS_TOPICS, True, allow),
            Acl(AclType.PUBLISH_CLIENT_SEND, topics.ALL_COMMANDS_TOPICS, True, allow),
            Acl(AclType.SUBSCRIBE_PATTERN, topics.ALL_STATUS_TOPICS, True, allow),
            # Several fleet servers may share the status stream: $share/<group>/...
            Acl(AclType.SUBSCRIBE_PATTERN, SHARED_STATUS_TOPICS, True, allow),
            Acl(AclType.PUBLISH_CLIENT_RECEIVE, topics.ALL_STATUS_TOPICS, True, allow),
            *_deny_everything_else(),
        )
    )


def _ensure_role(admin: DynsecAdmin, rolename: str, acls: frozenset[Acl]) -> None:
    try:
        admin.create_role(rolename, sorted(acls, key=_acl_order))
    except DynsecConflictError:
        _repair_role(admin, rolename, acls)


def _repair_role(admin: DynsecAdmin, rolename: str, acls: frozenset[Acl]) -> None:
    """An existing role ends with exactly these ACLs (extra or changed ones are replaced).

    Nothing is sent when it already matches: every ACL change kicks the role's clients.
    """
    current = admin.role_acls(rolename)
    for acl in sorted(current - acls, key=_acl_order):
        admin.remove_role_acl(rolename, acl.acltype, acl.topic)
    for acl in sorted(acls - current, key=_acl_order):
        admin.add_role_acl(rolename, acl)


def _acl_order(acl: Acl) -> tuple[str, str, bool, int]:
    return (str(acl.acltype), acl.topic, acl.allow, acl.priority)


def _is_device_role(rolename: str) -> bool:
    return rolename.startswith(DEVICE_ROLE_PREFIX)


def _is_server_role(rolename: str) -> bool:
    return rolename == SERVER_ROLE


def _ensure_client(
    admin: DynsecAdmin, username: str, password: str, rolename: str, ours: RolePredicate
) -> None:
    try:
        admin.create_client(username, password, roles=[(rolename, ROLE_PRIORITY)])
    except DynsecConflictError:
        _repair_client(admin, username, password, rolename, ours)


def _repair_client(
    admin: DynsecAdmin,
    username: str,
    password: str,
    rolename: str,
    ours: RolePredicate,
    clientid: str | None = None,
) -> None:
    """An existing login ends with this password, exactly this one role and, when ``clientid``
    is given, bound to that client id.

    A login holding a role that is not ours (the dynsec admin's, an operator's) is never taken
    over: that raises ``ConflictError`` before anything changes. The login keeps its enabled or
    disabled state: provisioning again never silently re-enables a login an operator disabled
    (``enable_device`` does that).
    """
    client = admin.get_client(username)
    held = {str(role["rolename"]) for role in client.get("roles", [])}
    foreign = sorted(role for role in held if role != rolename and not ours(role))
    if foreign:
        raise ConflictError(
            f"MQTT login {username!r} exists with roles {foreign} that fleet does not manage; "
            "choose another username",
            code="MqttLoginInUse",
        )
    if clientid is not None and client.get("clientid") != clientid:
        admin.set_client_id(username, clientid)
    admin.set_client_password(username, password)
    for other in sorted(held - {rolename}):
        admin.remove_client_role(username, other)
    # mosquitto 2.0 answers "Internal error" to adding a role a client already holds.
    if rolename not in held:
        admin.add_client_role(username, rolename, ROLE_PRIORITY)


def provision_device(admin: DynsecAdmin, device_id: str, username: str, password: str) -> None:
    """Create the device's role and login in one round trip; repair whichever already existed."""
    validate_login(username, password)
    rolename = device_role_name(device_id)
    acls = device_acls(device_id)
    commands = [
        cmd.create_role(rolename, sorted(acls, key=_acl_order)),
        cmd.create_client(
            username,
            password,
            roles=[(rolename, ROLE_PRIORITY)],
            clientid=device_client_id(device_id),
        ),
    ]
    # The plugin runs a message's commands in order, so the client finds the role just made.
    responses = admin.execute(commands)
    role_error, client_error = (
        error_for(command, response) for command, response in zip(commands, responses, strict=True)
    )
    for error in (role_error, client_error):
        if error is not None and not isinstance(error, DynsecConflictError):
            raise error
    if role_error is not None:
        _repair_role(admin, rolename, acls)
    if client_error is not None:
        _repair_client(
            admin, username, password, rolename, _is_device_role, device_client_id(device_id)
        )


def set_device_password(admin: DynsecAdmin, username: str, password: str) -> None:
    """New password; the device's open connections are kicked and must log in again."""
    validate_login(username, password)
    admin.set_client_password(username, password)


def disable_device(admin: DynsecAdmin, username: str) -> None:
    """Refuse the device's logins from now on and kick it off at once."""
    admin.disable_client(username)


def enable_device(admin: DynsecAdmin, username: str) -> None:
    admin.enable_client(username)


def delete_device(admin: DynsecAdmin, device_id: str, username: str) -> None:
    """Remove the login (kicking it) and the role; missing pieces are fine."""
    rolename = device_role_name(device_id)
    for command in (cmd.delete_client(username), cmd.delete_role(rolename)):
        with contextlib.suppress(DynsecNotFoundError):
            admin.run(command)


def provision_server_login(admin: DynsecAdmin, username: str, password: str) -> None:
    """The fleet server's own publisher login (role ``fleet-server``), created or repaired."""
    validate_login(username, password)
    _ensure_role(admin, SERVER_ROLE, server_acls())
    _ensure_client(admin, username, password, SERVER_ROLE, _is_server_role)


def _device_id_of(client: dict[str, Any]) -> str | None:
    """The device a login belongs to: the one whose role it holds (None when not exactly one)."""
    ids = {
        str(role.get("rolename"))[len(DEVICE_ROLE_PREFIX) :]
        for role in client.get("roles", [])
        if isinstance(role, dict) and _is_device_role(str(role.get("rolename")))
    }
    if len(ids) != 1:
        return None
    (device_id,) = ids
    return device_id if topics.is_valid_device_id(device_id) else None


def bind_device_client_ids(admin: DynsecAdmin) -> list[str]:
    """Bind every device login not yet bound to its client id; return the usernames bound.

    The upgrade path for logins made before ``provision_device`` bound them. A login already
    bound is left alone (binding kicks its connections); each one bound is kicked once and the
    agent reconnects at once with the same, now required, client id.
    """
    bound: list[str] = []
    for client in admin.list_client_details():
        device_id = _device_id_of(client)
        if device_id is None:
            continue
        username, wanted = str(client.get("username")), device_client_id(device_id)
        if client.get("clientid") == wanted:
            continue
        with contextlib.suppress(DynsecNotFoundError):  # deleted meanwhile
            admin.set_client_id(username, wanted)
            bound.append(username)
    if bound:
        log.info("bound %d device login(s) to their client ids", len(bound))
    return bound
