"""A default device id for this machine, when ``fleet-agent enroll`` is given none.

The host name made valid, followed by a hash of ``/etc/machine-id`` so that a fleet of
identically named devices (``raspberrypi``) still gets distinct ids. The machine id itself is
never sent: systemd asks applications to use a keyed hash of it, never the raw value. The rule
the result keeps is ``device_agent.protocol.device_id``'s.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

from device_agent.protocol.device_id import MAX_LENGTH, MIN_LENGTH

MACHINE_ID_FILE = Path("/etc/machine-id")
MACHINE_ID_LABEL = b"fleet-agent device id\x00"
HASH_CHARS = 12
FALLBACK_NAME = "device"
_INVALID_RUN = re.compile(r"[^a-z0-9]+")


def sanitize(name: str) -> str:
    """Lower case; every run of other characters becomes one hyphen; no hyphen at either end."""
    return _INVALID_RUN.sub("-", name.lower()).strip("-")


def machine_hash(machine_id_file: Path = MACHINE_ID_FILE) -> str | None:
    try:
        machine_id = machine_id_file.read_bytes().strip()
    except OSError:
        return None
    if not machine_id:
        return None
    return hashlib.sha256(MACHINE_ID_LABEL + machine_id).hexdigest()[:HASH_CHARS]


def default_device_id(machine_id_file: Path = MACHINE_ID_FILE, hostname: str | None = None) -> str:
    """``<host name>-<12 hex of the hashed machine id>``, or the host name alone when there is
    no machine id; always valid."""
    name = sanitize(socket.gethostname() if hostname is None else hostname)
    suffix = machine_hash(machine_id_file)
    if suffix is None:
        name = (name or FALLBACK_NAME)[:MAX_LENGTH].rstrip("-")
        return name if len(name) >= MIN_LENGTH else f"{FALLBACK_NAME}-{name}".rstrip("-")
    room = MAX_LENGTH - len(suffix) - 1
    name = name[:room].rstrip("-") or FALLBACK_NAME
    return f"{name}-{suffix}"
