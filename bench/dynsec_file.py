"""Device logins written straight into mosquitto's dynamic-security file, before it starts.

The plugin's file (``plugin_opt_config_file``) is JSON: ``clients`` (``username``, ``password``
= base64 of PBKDF2-HMAC-SHA512 of the password with ``salt`` (base64, 12 bytes) and
``iterations`` (101, the plugin's own), an optional ``clientid`` the login is bound to, and
``roles``), ``roles`` (``rolename`` and ``acls``), ``groups`` and ``defaultACLAccess``; it is
what ``mosquitto_ctrl dynsec init`` writes and the plugin rewrites on every change. Each device
gets exactly what ``fleet.mqtt.provisioning.provision_device`` would create over the control
topic (the role ``device-{id}`` with :func:`~fleet.mqtt.provisioning.device_acls`, the login
bound to ``fleet-agent-{id}``), so a broker started on this file holds N devices as if each had
enrolled, in seconds instead of hours.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fleet.mqtt.provisioning import (
    ROLE_PRIORITY,
    device_acls,
    device_client_id,
    device_role_name,
)

ITERATIONS = 101
SALT_BYTES = 12


def password_fields(password: str, salt: bytes | None = None) -> dict[str, Any]:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
    }


def device_entries(
    device_id: str, password_hash: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (client, role) entries of one device, as the plugin stores them."""
    role = device_role_name(device_id)
    acls = sorted(device_acls(device_id), key=lambda a: (str(a.acltype), a.topic, a.priority))
    client = {
        "username": device_id,
        "clientid": device_client_id(device_id),
        **password_hash,
        "roles": [{"rolename": role, "priority": ROLE_PRIORITY}],
    }
    return client, {"rolename": role, "acls": [a.to_json() for a in acls]}


def add_devices(path: Path, devices: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Append (device id, password fields) logins to the file at ``path`` (the broker must be
    stopped: it keeps its own copy in memory and would overwrite the file). Logins already in
    the file are kept as they are. Returns how many were added."""
    data = json.loads(path.read_text())
    clients: list[dict[str, Any]] = data.setdefault("clients", [])
    roles: list[dict[str, Any]] = data.setdefault("roles", [])
    known = {c["username"] for c in clients}
    added = 0
    for device_id, password_hash in devices:
        if device_id in known:
            continue
        client, role = device_entries(device_id, password_hash)
        clients.append(client)
        roles.append(role)
        added += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return added


def count_clients(path: Path) -> int:
    return len(json.loads(path.read_text()).get("clients", []))
