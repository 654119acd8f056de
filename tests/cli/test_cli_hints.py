"""The server's errors name no command-line flag (REST and dashboard users read them too); the
CLI adds its own advice from the error's code and the command that got it (issue 14, part 6)."""

from __future__ import annotations

import pytest

from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.cli.conftest import Fleet
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker


@pytest.fixture
def device_token(services: Services) -> str:
    services.broker = FakeBroker()
    services.scope_maps.create(
        "devices-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="devices-read", actor="t")
    secret = services.groups.create_secret("pilots", actor="t").value or ""
    services.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    return "dev-rpi-0001"


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (("token", "delete", "--yes"), "; use `fleet device delete --name rpi-0001`"),
        (
            ("token", "update", "--status", "disabled"),
            "; use `fleet device disable --name rpi-0001`",
        ),
        (
            ("token", "credential", "generate", "--password1"),
            "; use `fleet device rotate --name rpi-0001` for a new password, "
            "`fleet device disable --name rpi-0001` to end access",
        ),
    ],
)
def test_a_device_tokens_refusal_names_the_device_command(
    fleet: Fleet, device_token: str, args: tuple[str, ...], advice: str
) -> None:
    result = fleet.run(*args, "--name", device_token)
    assert result.exit_code == 1
    assert "(DeviceToken, HTTP 409)" + advice in result.stderr


def test_a_scope_map_in_use_names_group_update(fleet: Fleet, services: Services) -> None:
    services.scope_maps.create(
        "edge-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="edge-read", actor="t")
    result = fleet.run("scope-map", "delete", "--name", "edge-read", "--yes")
    assert result.exit_code == 1
    assert "serves device group 'pilots': give the group another scope map first" in result.stderr
    assert "`fleet group update --name GROUP --scope-map OTHER`" in result.stderr


def test_the_rest_message_names_no_flag(fleet: Fleet, device_token: str) -> None:
    """Where no advice is known (a scope map change), the server's message is shown alone."""
    result = fleet.run("token", "update", "--name", device_token, "--scope-map", "devices-read")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("(DeviceToken, HTTP 409)")
    assert "--" not in result.stderr
