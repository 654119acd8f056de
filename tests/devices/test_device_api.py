"""Groups, devices and enrollment through the REST API (broker faked; e2e uses mosquitto)."""

from __future__ import annotations

import base64

import pytest
from flask import Flask

from fleet.api.device_schemas import DeviceList, DeviceOut, EnrollResponse, GroupList, GroupOut
from fleet.app import create_app
from fleet.services import Services
from tests.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker


@pytest.fixture
def app(fleet: Services) -> Flask:
    return create_app(fleet.ctx.settings, fleet)


@pytest.fixture
def call(app: Flask, fleet: Services):  # type: ignore[no-untyped-def]
    _, key = fleet.api_keys.create("ops", actor="t")
    client = app.test_client()

    def run(method: str, path: str, body: object = None, auth: bool = True):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {key}"} if auth else {}
        return client.open(f"/api/v1{path}", method=method, json=body, headers=headers)

    return run


def test_group_routes(call) -> None:  # type: ignore[no-untyped-def]
    made = call(
        "POST",
        "/groups",
        {"name": "fleet-eu", "scopeMap": "devices-read", "inactivityLimitDays": 14},
    )
    assert made.status_code == 201, made.get_json()
    GroupOut.model_validate(made.get_json())
    bad = call("POST", "/groups", {"name": "writers", "scopeMap": "_repositories_push"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "ScopeMapNotReadOnly"
    secret = call("POST", "/groups/fleet-eu/secrets", {"expirationInDays": 7}).get_json()
    assert secret["value"].startswith("flte_") and secret["kind"] == "secret"
    code = call("POST", "/groups/fleet-eu/secrets", {"oneTime": True}).get_json()
    assert code["value"].startswith("fltc_")
    shown = call("GET", "/groups/fleet-eu").get_json()
    assert [s["kind"] for s in shown["secrets"]] == ["secret", "code"]
    assert all("value" not in s for s in shown["secrets"])
    revoked = call("DELETE", f"/groups/fleet-eu/secrets/{secret['id']}").get_json()
    assert revoked["revokedAt"]
    patched = call("PATCH", "/groups/fleet-eu", {"requireApproval": True}).get_json()
    assert patched["requireApproval"] is True and patched["inactivityLimitDays"] == 14
    GroupList.model_validate(call("GET", "/groups").get_json())
    assert call("DELETE", "/groups/fleet-eu").status_code == 204


def test_enroll_is_public_and_answers_per_protocol(call, fleet: Services, secret: str) -> None:  # type: ignore[no-untyped-def]
    dev = new_device("rpi-0001")
    x, ed = dev.keys
    answer = call(
        "POST",
        "/enroll",
        {
            "deviceId": "rpi-0001",
            "enrollmentSecret": secret,
            "x25519PublicKey": x,
            "ed25519PublicKey": ed,
        },
        auth=False,
    )
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    EnrollResponse.model_validate(body)
    assert body["mqtt"]["url"] == "mqtt://broker.test:1883"
    assert body["mqtt"]["topics"]["status"] == "fleet/v1/devices/rpi-0001/status"
    assert body["registry"] == {
        "loginServer": "127.0.0.1:5000",
        "username": "dev-rpi-0001",
        "tokenEndpoint": "http://127.0.0.1:8080/oauth2/token",
        "service": "fleet-registry",
    }
    assert len(base64.b64decode(body["serverSigningKey"])) == 32
    again = call(
        "POST",
        "/enroll",
        {
            "deviceId": "rpi-0001",
            "enrollmentSecret": secret,
            "x25519PublicKey": x,
            "ed25519PublicKey": ed,
        },
        auth=False,
    )
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "DeviceExists"
    wrong = call(
        "POST",
        "/enroll",
        {
            "deviceId": "rpi-0002",
            "enrollmentSecret": "flte_x",
            "x25519PublicKey": x,
            "ed25519PublicKey": ed,
        },
        auth=False,
    )
    assert wrong.status_code == 401
    both = call(
        "POST",
        "/enroll",
        {
            "deviceId": "rpi-0003",
            "enrollmentSecret": secret,
            "enrollmentCode": secret,
            "x25519PublicKey": x,
            "ed25519PublicKey": ed,
        },
        auth=False,
    )
    assert both.status_code == 400


def test_enroll_without_broker_is_503(
    call, fleet: Services, broker: FakeBroker, secret: str
) -> None:  # type: ignore[no-untyped-def]
    broker.down = True
    x, ed = new_device("rpi-0001").keys
    answer = call(
        "POST",
        "/enroll",
        {
            "deviceId": "rpi-0001",
            "enrollmentSecret": secret,
            "x25519PublicKey": x,
            "ed25519PublicKey": ed,
        },
        auth=False,
    )
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "BrokerUnavailable"


def test_device_routes(call, fleet: Services, secret: str) -> None:  # type: ignore[no-untyped-def]
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    listed = call("GET", "/devices?group=pilots").get_json()
    DeviceList.model_validate(listed)
    assert [d["deviceId"] for d in listed["value"]] == ["rpi-0001"]
    assert call("GET", "/devices?status=disabled").get_json()["value"] == []
    for action, expected in (
        ("disable", "disabled"),
        ("enable", "active"),
        ("rotate", "active"),
        ("redeliver", "active"),
    ):
        response = call("POST", f"/devices/rpi-0001/{action}")
        assert response.status_code == 200, response.get_json()
        DeviceOut.model_validate(response.get_json())
        assert response.get_json()["status"] == expected
    assert call("POST", "/devices/rpi-0001/approve").status_code == 409
    assert call("POST", "/devices/nobody/disable").status_code == 404
    assert call("DELETE", "/devices/rpi-0001").status_code == 204
    assert call("GET", "/devices/rpi-0001").status_code == 404
