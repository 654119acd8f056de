"""Groups, devices and enrollment through the REST API (broker faked; e2e uses mosquitto)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from fleet.api.device_schemas import DeviceList, DeviceOut, EnrollResponse, GroupList, GroupOut
from fleet.api.devices import device_json
from fleet.app import create_app
from fleet.mqtt import topics
from fleet.services import Services
from fleet.services.revocation import AccessEnd
from fleet.services.views import DeviceView
from tests.services.devices.conftest import new_device, status
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


def _code(response: Any) -> str:
    """The JSON error answer's ``code``."""
    code: str = response.get_json()["error"]["code"]
    return code


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
    for body, code in [
        ({"passwordLifetimeDays": 0}, "InvalidPasswordLifetime"),
        ({"passwordLifetimeDays": 7, "rotationWindowDays": 7}, "InvalidRotationWindow"),
        ({"inactivityLimitDays": 0}, "InvalidInactivityLimit"),
    ]:
        refused = call("POST", "/groups", {"name": "fleet-us", "scopeMap": "devices-read", **body})
        assert refused.status_code == 400 and _code(refused) == code, refused.get_json()


def test_reject_a_pending_device(call, fleet: Services, broker: FakeBroker) -> None:  # type: ignore[no-untyped-def]
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    value = fleet.groups.create_secret("careful", actor="t").value or ""
    fleet.devices.enroll("rpi-0007", value, *new_device("rpi-0007").keys)
    assert call("POST", "/devices/rpi-0007/reject").status_code == 204
    gone = call("GET", "/devices/rpi-0007")
    assert gone.status_code == 404 and _code(gone) == "DeviceNotFound"
    assert "rpi-0007" not in broker.logins
    again = call("POST", "/devices/rpi-0007/reject")
    assert again.status_code == 404 and _code(again) == "DeviceNotFound"


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
    assert wrong.status_code == 401 and _code(wrong) == "InvalidEnrollmentSecret"
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
    assert both.status_code == 400 and _code(both) == "InvalidRequest"


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


def test_device_routes(call, fleet: Services, broker: FakeBroker, secret: str) -> None:  # type: ignore[no-untyped-def]
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    listed = call("GET", "/devices?group=pilots").get_json()
    DeviceList.model_validate(listed)
    assert [d["deviceId"] for d in listed["value"]] == ["rpi-0001"]
    assert call("GET", "/devices?status=disabled").get_json()["value"] == []
    for action, expected in (("disable", "disabled"), ("enable", "active")):
        response = call("POST", f"/devices/rpi-0001/{action}")
        assert response.status_code == 200, response.get_json()
        DeviceOut.model_validate(response.get_json())
        assert response.get_json()["status"] == expected
    credentials = topics.credentials_topic("rpi-0001")
    held = dev.open(fleet, broker.retained[credentials])
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=held.version)
    before = call("GET", "/devices/rpi-0001").get_json()
    assert before["pendingDeliveries"] == 0 and before["lastVersion"] == held.version

    # rotate: a new version, sealed to the device, in the other slot, with a working password
    published = len(broker.published)
    rotated = call("POST", "/devices/rpi-0001/rotate")
    assert rotated.status_code == 200, rotated.get_json()
    body = rotated.get_json()
    DeviceOut.model_validate(body)
    assert body["status"] == "active"
    assert body["lastVersion"] == before["lastVersion"] + 1
    assert body["pendingDeliveries"] == 1
    assert [p.topic for p in broker.published[published:]] == [credentials]
    fresh = dev.open(fleet, broker.retained[credentials], last_version=held.version)
    assert fresh.version == body["lastVersion"]
    assert fresh.payload["slot"] != held.payload["slot"]
    assert fleet.registry_auth.authenticate("dev-rpi-0001", fresh.payload["password"])
    slots = [p.name for p in fleet.tokens.show("dev-rpi-0001").passwords]
    assert sorted(slots) == ["password1", "password2"]

    # redeliver with that delivery unacknowledged: the very same envelope again, no new version
    published = len(broker.published)
    again = call("POST", "/devices/rpi-0001/redeliver")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["lastVersion"] == body["lastVersion"]
    assert again.get_json()["pendingDeliveries"] == 1
    resent = broker.published[published:]
    assert [p.topic for p in resent] == [credentials]
    assert dev.open(fleet, resent[0].payload, last_version=held.version).version == fresh.version

    # redeliver with nothing pending: a fresh password (the server keeps none to send twice)
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=fresh.version)
    renewed = call("POST", "/devices/rpi-0001/redeliver").get_json()
    assert renewed["lastVersion"] == fresh.version + 1 and renewed["pendingDeliveries"] == 1
    newest = dev.open(fleet, broker.retained[credentials], last_version=fresh.version)
    assert newest.version == fresh.version + 1
    assert newest.payload["password"] != fresh.payload["password"]

    approve = call("POST", "/devices/rpi-0001/approve")
    assert approve.status_code == 409 and _code(approve) == "NotPending"
    reject = call("POST", "/devices/rpi-0001/reject")
    assert reject.status_code == 409 and _code(reject) == "NotPending"
    missing = call("POST", "/devices/nobody/disable")
    assert missing.status_code == 404 and _code(missing) == "DeviceNotFound"
    deleted = call("DELETE", "/devices/rpi-0001")
    assert deleted.status_code == 200
    # Enabled until now: a JWT issued the moment before lives the group's 60 s, plus leeway.
    ends_by = datetime.fromisoformat(deleted.get_json()["registryAccessEndsBy"])
    assert ends_by.timestamp() == int(fleet.ctx.clock().timestamp() + 1) + 60 + 60
    gone = call("GET", "/devices/rpi-0001")
    assert gone.status_code == 404 and _code(gone) == "DeviceNotFound"


def test_a_device_in_json_has_every_field_in_camel_case_with_iso_times() -> None:
    at = datetime(2026, 12, 2, 17, 0, 5, tzinfo=UTC)
    view = DeviceView(
        device_id="pi-0001", group="fleet-eu", status="active", token="device-pi-0001",
        mqtt_username="pi-0001", enrolled_at=at, approved_at=None, last_seen_at=at,
        last_version=3, acked_credentials_version=2, active_slot="password2",
        pending_deliveries=1, last_pull_at=at, last_pull_ok=True, last_pull_detail=None,
        active_expiry=at, allow_reenroll=False,
    )  # fmt: skip
    assert device_json(view) == {
        "deviceId": "pi-0001", "group": "fleet-eu", "status": "active",
        "token": "device-pi-0001", "mqttUsername": "pi-0001",
        "enrolledAt": "2026-12-02T17:00:05+00:00", "approvedAt": None,
        "lastSeenAt": "2026-12-02T17:00:05+00:00", "lastVersion": 3,
        "ackedCredentialsVersion": 2, "activeSlot": "password2", "pendingDeliveries": 1,
        "lastPullAt": "2026-12-02T17:00:05+00:00", "lastPullOk": True, "lastPullDetail": None,
        "activeExpiry": "2026-12-02T17:00:05+00:00", "allowReenroll": False,
        "registryAccessEndsBy": None, "registryAccessEnded": None,
    }  # fmt: skip
    DeviceOut.model_validate(device_json(view))
    ended = replace(view, status="disabled", access=AccessEnd(ends_by=at, ended=True))
    assert device_json(ended)["registryAccessEndsBy"] == "2026-12-02T17:00:05+00:00"
    assert device_json(ended)["registryAccessEnded"] is True
    DeviceOut.model_validate(device_json(ended))


def test_the_device_list_takes_the_dashboards_filters(call, fleet: Services) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from tests.services.test_device_list import Row, add

    fleet.groups.update("pilots", inactivity_limit_days=7, actor="t")
    add(
        fleet,
        [
            Row("pi-0001", group="pilots", last_seen=timedelta(days=8), pending=1),
            Row("pi-0002", group="pilots", last_seen=timedelta(hours=1),
                expiry=timedelta(hours=2)),
            Row("pi-0003", group="pilots", status="disabled"),
            Row("rpi-0001", group="pilots", last_seen=timedelta(days=2)),
        ],
    )  # fmt: skip

    def ids(query: str) -> list[str]:
        answer = call("GET", f"/devices?{query}")
        assert answer.status_code == 200, answer.get_json()
        DeviceList.model_validate(answer.get_json())
        return [d["deviceId"] for d in answer.get_json()["value"]]

    assert ids("q=pi-") == ["pi-0001", "pi-0002", "pi-0003"]
    assert ids("not_seen=1") == ["pi-0001"]
    assert ids("pending=true") == ["pi-0001"]
    assert ids("expiring=1") == ["pi-0002"]
    assert ids("status=disabled&group=pilots") == ["pi-0003"]
    assert ids("sort=last_seen") == ["pi-0001", "rpi-0001", "pi-0002", "pi-0003"]
    assert ids("sort=last_seen&dir=desc") == ["pi-0003", "pi-0002", "rpi-0001", "pi-0001"]
    first = call("GET", "/devices?sort=last_seen&limit=2").get_json()
    assert [d["deviceId"] for d in first["value"]] == ["pi-0001", "rpi-0001"]
    rest = call("GET", f"/devices?sort=last_seen&limit=2&cursor={first['nextCursor']}")
    assert [d["deviceId"] for d in rest.get_json()["value"]] == ["pi-0002", "pi-0003"]
    other = call("GET", f"/devices?sort=expiry&limit=2&cursor={first['nextCursor']}")
    assert other.status_code == 400 and _code(other) == "InvalidCursor"
    assert first["value"][0]["activeExpiry"] is None
    assert (
        ids("expiring=1")
        and call("GET", "/devices?q=pi-0002").get_json()["value"][0]["activeExpiry"]
    )
    for query, code in (
        ("status=asleep", "InvalidStatus"),
        ("sort=colour", "InvalidSort"),
        ("dir=up", "InvalidSort"),
        ("q=pi_", "InvalidFilter"),
        ("q=" + "p" * 47, "InvalidFilter"),
        ("not_seen=maybe", "InvalidFilter"),
    ):
        answer = call("GET", f"/devices?{query}")
        assert answer.status_code == 400 and _code(answer) == code, query

    doc = call("GET", "/openapi.json", auth=False).get_json()
    names = {p["name"] for p in doc["paths"]["/api/v1/devices"]["get"]["parameters"]}
    assert names == {"q", "group", "status", "expiring", "not_seen", "pending", "sort", "dir",
                     "limit", "cursor"}  # fmt: skip
