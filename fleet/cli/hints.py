"""The CLI's own advice for an error the server answered: what to type instead.

The server's messages name no command-line flag, as REST and dashboard users read them too.
The CLI adds the command to run from the error's ``code`` and the command that got it (with its
options), as one more clause after the server's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fleet.domain.names import DEVICE_TOKEN_PREFIX

Params = Mapping[str, Any]


def _device(params: Params) -> str:
    """The device that owns the token the command named (its token is the prefix + its id)."""
    name = str(params.get("name") or "")
    return name.removeprefix(DEVICE_TOKEN_PREFIX) if name.startswith(DEVICE_TOKEN_PREFIX) else "ID"


def _device_passwords(params: Params) -> str:
    device = _device(params)
    return (
        f"use `fleet device rotate --name {device}` for a new password, "
        f"`fleet device disable --name {device}` to end access"
    )


def _device_status(params: Params) -> str | None:
    if params.get("status") is None:
        return None  # its scope map: it comes from the device's group, as the message says
    verb = "enable" if params.get("status") == "enabled" else "disable"
    return f"use `fleet device {verb} --name {_device(params)}`"


_FOLLOW_JOB = "follow it with `fleet job show --id N --wait` (its id above)"

# (command below `fleet`, error code) -> the advice, from the command's parameters.
HINTS: dict[tuple[str, str], Callable[[Params], str | None]] = {
    ("token delete", "DeviceToken"): lambda p: f"use `fleet device delete --name {_device(p)}`",
    ("token update", "DeviceToken"): _device_status,
    ("token credential generate", "DeviceToken"): _device_passwords,
    ("token credential delete", "DeviceToken"): _device_passwords,
    ("device rotate", "JobRunning"): lambda _p: _FOLLOW_JOB,
    ("device disable", "JobRunning"): lambda _p: _FOLLOW_JOB,
    ("scope-map delete", "ScopeMapInUse"): lambda _p: (
        "give each such group another map with `fleet group update --name GROUP --scope-map OTHER`"
    ),
}


def hint_for(command_path: str, code: str, params: Params) -> str | None:
    """The advice for ``code`` answered to ``command_path`` (``fleet token delete``), if any."""
    command = command_path.split(" ", 1)[1] if " " in command_path else command_path
    advice = HINTS.get((command, code))
    return advice(params) if advice is not None else None
