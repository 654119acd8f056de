"""The JSON commands of mosquitto's dynamic-security plugin, built as plain dicts.

Pure functions, no I/O: ``DynsecAdmin`` sends them, one or several per message. Field names
are the plugin's own (see mosquitto's plugins/dynamic-security/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleet.mqtt.acl import Acl, AclType

Command = dict[str, Any]


def _with_text(command: Command, textname: str | None) -> Command:
    if textname is not None:
        command["textname"] = textname
    return command


def create_client(
    username: str,
    password: str,
    *,
    roles: Iterable[tuple[str, int]] = (),
    textname: str | None = None,
    clientid: str | None = None,
) -> Command:
    """With ``clientid``, the login is accepted only from a connection using that client id."""
    command: Command = {"command": "createClient", "username": username, "password": password}
    if clientid is not None:
        command["clientid"] = clientid
    role_list = [{"rolename": name, "priority": priority} for name, priority in roles]
    if role_list:
        command["roles"] = role_list
    return _with_text(command, textname)


def delete_client(username: str) -> Command:
    return {"command": "deleteClient", "username": username}


def enable_client(username: str) -> Command:
    return {"command": "enableClient", "username": username}


def disable_client(username: str) -> Command:
    return {"command": "disableClient", "username": username}


def set_client_password(username: str, password: str) -> Command:
    return {"command": "setClientPassword", "username": username, "password": password}


def set_client_id(username: str, clientid: str | None) -> Command:
    """Bind the login to one client id (``None``: any); mosquitto kicks its connections."""
    command: Command = {"command": "setClientId", "username": username}
    if clientid is not None:
        command["clientid"] = clientid
    return command


def get_client(username: str) -> Command:
    return {"command": "getClient", "username": username}


def list_clients(*, count: int = -1, offset: int = 0, verbose: bool = False) -> Command:
    """Usernames; with ``verbose``, each client's details (client id, roles, ...) instead."""
    return {"command": "listClients", "verbose": verbose, "count": count, "offset": offset}


def add_client_role(username: str, rolename: str, priority: int | None = None) -> Command:
    command: Command = {"command": "addClientRole", "username": username, "rolename": rolename}
    if priority is not None:
        command["priority"] = priority
    return command


def remove_client_role(username: str, rolename: str) -> Command:
    return {"command": "removeClientRole", "username": username, "rolename": rolename}


def create_role(rolename: str, acls: Iterable[Acl] = (), *, textname: str | None = None) -> Command:
    command: Command = {"command": "createRole", "rolename": rolename}
    acl_list = [acl.to_json() for acl in acls]
    if acl_list:
        command["acls"] = acl_list
    return _with_text(command, textname)


def delete_role(rolename: str) -> Command:
    return {"command": "deleteRole", "rolename": rolename}


def get_role(rolename: str) -> Command:
    return {"command": "getRole", "rolename": rolename}


def add_role_acl(rolename: str, acl: Acl) -> Command:
    return {"command": "addRoleACL", "rolename": rolename, **acl.to_json()}


def remove_role_acl(rolename: str, acltype: AclType, topic: str) -> Command:
    return {
        "command": "removeRoleACL",
        "rolename": rolename,
        "acltype": str(acltype),
        "topic": topic,
    }


def target_of(command: Command) -> str:
    """The name a command acts on, for error messages (never the password)."""
    return str(command.get("username") or command.get("rolename") or "")
