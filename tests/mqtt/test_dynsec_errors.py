"""Turning dynamic-security answers into errors (fleet/mqtt/dynsec.py, no broker needed)."""

from __future__ import annotations

import pytest

from fleet.domain.errors import ConflictError, FleetError, NotFoundError
from fleet.mqtt import dynsec_commands as cmd
from fleet.mqtt.dynsec import error_for
from fleet.mqtt.errors import DynsecCommandError


def test_success_is_no_error() -> None:
    assert error_for(cmd.get_client("u1"), {"command": "getClient", "data": {}}) is None


@pytest.mark.parametrize(
    ("command", "error", "kind"),
    [
        (cmd.get_client("u1"), "Client not found", NotFoundError),
        (cmd.delete_role("r1"), "Role not found", NotFoundError),
        (cmd.create_client("u1", "pw"), "Client already exists", ConflictError),
        (cmd.create_role("r1"), "Role already exists", ConflictError),
        (cmd.add_client_role("u1", "r1"), "Internal error", DynsecCommandError),
    ],
)
def test_errors_are_typed_and_name_the_command(
    command: dict[str, object], error: str, kind: type[FleetError]
) -> None:
    found = error_for(command, {"command": command["command"], "error": error})
    assert isinstance(found, kind)
    assert isinstance(found, DynsecCommandError)
    assert found.command == command["command"]
    assert str(command["command"]) in found.message
    assert error in found.message


def test_a_password_never_appears_in_an_error() -> None:
    command = cmd.set_client_password("u1", "s3cret-value")
    found = error_for(command, {"command": "setClientPassword", "error": "Client not found"})
    assert found is not None
    assert "s3cret-value" not in found.message
    assert "u1" in found.message
