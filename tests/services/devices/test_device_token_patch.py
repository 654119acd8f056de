"""A device's token follows its device: ``PATCH /tokens/dev-...`` that would change its status
or plan its disable is a 409 naming the command to use, and changes nothing (issue 12,
defect 16, first half). Disabled that way, an honest agent looped reject/reissue."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlmodel import select

from fleet.app import create_app
from fleet.db.models import AuditEvent, TokenPassword
from fleet.services import Services
from tests.services.devices.conftest import new_device

DEVICE = "rpi-0001"
TOKEN = f"dev-{DEVICE}"


@pytest.fixture
def call(fleet: Services, secret: str):  # type: ignore[no-untyped-def]
    fleet.devices.enroll(DEVICE, secret, *new_device(DEVICE).keys)
    app: Flask = create_app(fleet.ctx.settings, fleet)
    _, key = fleet.api_keys.create("ops", actor="t")
    client = app.test_client()

    def run(method: str, path: str, body: object = None) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        return client.open(f"/api/v1{path}", method=method, json=body, headers=headers)

    return run


def _audited(fleet: Services) -> list[str]:
    with fleet.ctx.db.session() as s:
        return [e.action for e in s.exec(select(AuditEvent)).all()]


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ({"status": "disabled"}, "POST /api/v1/devices/rpi-0001/disable"),
        ({"disableAt": "2030-01-01T00:00:00Z"}, "POST /api/v1/devices/rpi-0001/disable"),
        ({"disableAt": None}, "POST /api/v1/devices/rpi-0001/"),
    ],
)
def test_status_and_planned_disable_of_a_device_token_are_refused(
    call: Any, fleet: Services, body: dict[str, object], command: str
) -> None:
    before = call("GET", f"/tokens/{TOKEN}").get_json()
    audited = _audited(fleet)
    response = call("PATCH", f"/tokens/{TOKEN}", body)
    assert response.status_code == 409, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "DeviceToken"
    assert DEVICE in error["message"] and command in error["message"]
    assert call("GET", f"/tokens/{TOKEN}").get_json() == before
    assert _audited(fleet) == audited


def test_enabling_a_disabled_device_token_names_device_enable(call: Any, fleet: Services) -> None:
    fleet.devices.disable(DEVICE, actor="t")
    response = call("PATCH", f"/tokens/{TOKEN}", {"status": "enabled"})
    assert response.status_code == 409
    assert "POST /api/v1/devices/rpi-0001/enable" in response.get_json()["error"]["message"]
    assert call("GET", f"/tokens/{TOKEN}").get_json()["status"] == "disabled"


def test_an_unchanged_status_is_still_fine(call: Any) -> None:
    """Saying what already is changes nothing and is not an error (the CLI may send it)."""
    response = call("PATCH", f"/tokens/{TOKEN}", {"status": "enabled"})
    assert response.status_code == 200, response.get_json()


def _live_hashes(fleet: Services) -> list[tuple[str, str]]:
    with fleet.ctx.db.session() as s:
        rows = s.exec(select(TokenPassword).order_by(TokenPassword.slot)).all()
        return [(r.slot, r.secret_hash) for r in rows]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/tokens/{TOKEN}/credentials/generate", {"passwords": ["password1"]}),
        ("POST", f"/tokens/{TOKEN}/credentials/generate", {"passwords": ["password2"]}),
        ("DELETE", f"/tokens/{TOKEN}/credentials/password1", None),
    ],
)
def test_a_device_tokens_passwords_are_not_made_or_removed_by_hand(
    call: Any, fleet: Services, method: str, path: str, body: object
) -> None:
    """Generating password1 replaced the device's live password (the device never received
    the new one: locked out); password2 was a copy the device never had; deleting password1
    locked it out too. Each is a 409 naming the device's rotate and changes nothing."""
    before, audited = _live_hashes(fleet), _audited(fleet)
    assert before, "the enrolled device has a live password"
    response = call(method, path, body)
    assert response.status_code == 409, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "DeviceToken"
    assert "POST /api/v1/devices/rpi-0001/rotate" in error["message"]
    assert _live_hashes(fleet) == before
    assert _audited(fleet) == audited


def test_an_ordinary_tokens_passwords_are_still_generated(call: Any, fleet: Services) -> None:
    assert (
        call("POST", "/tokens", {"name": "ci-runner", "scopeMap": "devices-read"}).status_code
        == 201
    )
    response = call("POST", "/tokens/ci-runner/credentials/generate", {"passwords": ["password2"]})
    assert response.status_code == 200, response.get_json()
