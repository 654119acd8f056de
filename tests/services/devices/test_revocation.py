"""Registry JWT lifetimes per group, and when a revoked credential's registry access ends.

The clock starts on a whole second, so the last JWT a request could sign is issued within the
next second: access ends ``1 + lifetime + 60`` seconds after the change.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from sqlmodel import col, select

from fleet.app import create_app
from fleet.cli.base import access_end_line
from fleet.db.models import AuditEvent
from fleet.domain.errors import ValidationError
from fleet.mqtt import topics
from fleet.registry_auth.tokens import REGISTRY_LEEWAY
from fleet.services import Services
from tests.api.token_endpoint.test_endpoint import basic, get_token
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device

SETTLE = 1  # fleet.services.revocation.SETTLE_S, on a clock at a whole second


def _enroll(fleet: Services, secret: str, device_id: str) -> str:
    """Enroll ``device_id``; its registry password."""
    dev = new_device(device_id)
    fleet.devices.enroll(device_id, secret, *dev.keys)
    retained = fleet.broker.retained  # type: ignore[attr-defined]
    opened = dev.open(fleet, retained[topics.credentials_topic(device_id)])
    password: str = opened.payload["password"]
    return password


def _lifetime(app: Flask, name: str, password: str) -> int:
    answer = get_token(app, basic(name, password), "repository:edge/app:pull")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert body["expires_in"] == claims["exp"] - claims["iat"]
    return int(claims["exp"] - claims["iat"])


def _last_detail(fleet: Services, action: str) -> dict[str, Any]:
    with fleet.ctx.db.session() as s:
        event = s.exec(
            select(AuditEvent)
            .where(AuditEvent.action == action)
            .order_by(col(AuditEvent.id).desc())
        ).first()
    assert event is not None, action
    detail: dict[str, Any] = json.loads(event.detail)
    return detail


def test_a_device_token_lives_its_groups_jwt_lifetime_and_other_tokens_the_setting(
    fleet: Services, secret: str
) -> None:
    app = create_app(fleet.ctx.settings, fleet)
    password = _enroll(fleet, secret, "rpi-0001")
    assert fleet.groups.show("pilots").jwt_lifetime_seconds == 60
    assert _lifetime(app, "dev-rpi-0001", password) == 60

    fleet.groups.update("pilots", jwt_lifetime_seconds=900, actor="t")
    # The endpoint keeps what it looked up; a group's change reaches it at once.
    assert _lifetime(app, "dev-rpi-0001", password) == 900

    other = fleet.tokens.create("ci-reader", scope_map="_repositories_pull", actor="t")
    assert _lifetime(app, "ci-reader", other.passwords[0].value or "") == 300


@pytest.mark.parametrize("seconds", [59, 3601, 0, -60, True])
def test_a_jwt_lifetime_out_of_bounds_is_refused_and_changes_nothing(
    fleet: Services, seconds: int
) -> None:
    with pytest.raises(ValidationError) as caught:
        fleet.groups.create(
            "others", scope_map="devices-read", jwt_lifetime_seconds=seconds, actor="t"
        )
    assert caught.value.code == "InvalidJwtLifetime"
    with pytest.raises(ValidationError):
        fleet.groups.update("pilots", jwt_lifetime_seconds=seconds, actor="t")
    assert fleet.groups.show("pilots").jwt_lifetime_seconds == 60
    assert [g.name for g in fleet.groups.list().items] == ["pilots"]


def test_disabling_a_device_says_when_its_registry_access_ends_and_then_that_it_ended(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    _enroll(fleet, secret, "rpi-0001")
    disabled_at = clock()
    view = fleet.devices.disable("rpi-0001", actor="ops")
    assert view.access is not None and not view.access.ended
    expected = disabled_at + timedelta(seconds=SETTLE + 60 + REGISTRY_LEEWAY)
    assert view.access.ends_by == expected
    assert (
        datetime.fromisoformat(_last_detail(fleet, "device.disable")["access_ends_by"]) == expected
    )
    assert fleet.tokens.show("dev-rpi-0001").access == view.access

    clock.advance(seconds=SETTLE + 60 + REGISTRY_LEEWAY - 1)
    assert fleet.devices.show("rpi-0001").access.ended is False  # type: ignore[union-attr]
    clock.advance(seconds=1)
    shown = fleet.devices.show("rpi-0001").access
    assert shown is not None and shown.ended and shown.ends_by == expected
    listed = fleet.devices.list().items[0].access
    assert listed == shown

    fleet.devices.enable("rpi-0001", actor="ops")  # access is back: nothing ends
    assert fleet.devices.show("rpi-0001").access is None


def test_after_a_lifetime_is_shortened_the_longer_lived_jwts_are_still_counted(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    fleet.groups.update("pilots", jwt_lifetime_seconds=3600, actor="t")
    for device_id in ("rpi-0001", "rpi-0002"):
        _enroll(fleet, secret, device_id)
    shortened_at = clock()
    fleet.groups.update("pilots", jwt_lifetime_seconds=60, actor="t")
    clock.advance(seconds=10)
    # A JWT issued just before the change lives 3600 s from then.
    early = fleet.devices.disable("rpi-0001", actor="ops").access
    assert early is not None
    assert early.ends_by == shortened_at + timedelta(seconds=SETTLE + 3600 + REGISTRY_LEEWAY)

    clock.advance(seconds=3700)  # every 3600 s JWT has expired: 60 s ones only
    late_at = clock()
    late = fleet.devices.disable("rpi-0002", actor="ops").access
    assert late is not None
    assert late.ends_by == late_at + timedelta(seconds=SETTLE + 60 + REGISTRY_LEEWAY)


def test_changing_the_lifetime_twice_keeps_the_longest_still_valid(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    _enroll(fleet, secret, "rpi-0001")
    first = clock()
    fleet.groups.update("pilots", jwt_lifetime_seconds=3600, actor="t")
    clock.advance(seconds=5)
    fleet.groups.update("pilots", jwt_lifetime_seconds=120, actor="t")
    clock.advance(seconds=5)
    fleet.groups.update("pilots", jwt_lifetime_seconds=60, actor="t")
    access = fleet.devices.disable("rpi-0001", actor="ops").access
    assert access is not None
    # The 3600 s JWTs were issued until first + 5 s.
    assert access.ends_by == first + timedelta(seconds=5 + SETTLE + 3600 + REGISTRY_LEEWAY)


def test_deleting_a_device_answers_when_its_access_ends(
    fleet: Services, secret: str, clock: FakeClock
) -> None:
    _enroll(fleet, secret, "rpi-0001")
    deleted_at = clock()
    access = fleet.devices.delete("rpi-0001", actor="ops")
    assert access is not None and not access.ended
    assert access.ends_by == deleted_at + timedelta(seconds=SETTLE + 60 + REGISTRY_LEEWAY)
    detail = _last_detail(fleet, "device.delete")
    assert datetime.fromisoformat(detail["access_ends_by"]) == access.ends_by


def test_a_removed_or_replaced_password_and_a_disabled_token_record_when_access_ends(
    services: Services, clock: FakeClock
) -> None:
    made = services.tokens.create("MyToken", scope_map="_repositories_pull", actor="t")
    assert made.access is None
    span = timedelta(seconds=SETTLE + 300 + REGISTRY_LEEWAY)  # the setting's 300 s

    removed_at = clock()
    after = services.tokens.delete_credential("MyToken", "password2", actor="t")
    assert after.status == "enabled" and after.access is not None
    assert after.access.ends_by == removed_at + span

    clock.advance(seconds=30)  # a fresh value in the empty slot removes nothing
    services.tokens.generate_credentials("MyToken", ["password2"], actor="t")
    assert services.tokens.show("MyToken").access.ends_by == removed_at + span  # type: ignore[union-attr]
    replaced_at = clock()  # replacing password1 does
    services.tokens.generate_credentials("MyToken", ["password1"], actor="t")
    assert services.tokens.show("MyToken").access.ends_by == replaced_at + span  # type: ignore[union-attr]

    clock.advance(seconds=30)
    disabled_at = clock()
    disabled = services.tokens.update("MyToken", status="disabled", actor="t")
    assert disabled.access is not None and disabled.access.ends_by == disabled_at + span

    clock.advance(seconds=30)  # disabled: no JWT was issued since, nothing moves
    assert services.tokens.delete_credential("MyToken", "password1", actor="t").access == (
        services.tokens.show("MyToken").access
    )
    assert services.tokens.show("MyToken").access.ends_by == disabled_at + span  # type: ignore[union-attr]
    deleted = services.tokens.delete("MyToken", actor="t")
    assert deleted is not None and deleted.ends_by == disabled_at + span

    again = services.tokens.create("Other", scope_map="_repositories_pull", actor="t")
    services.tokens.update(again.name, status="disabled", actor="t")
    assert services.tokens.update(again.name, status="enabled", actor="t").access is None


def test_the_cli_says_ends_by_until_the_time_then_ended() -> None:
    answer = {"registryAccessEndsBy": "2026-12-03T07:02:03+00:00", "registryAccessEnded": False}
    at = datetime.fromisoformat("2026-12-03T07:02:03+00:00").timestamp()
    line = access_end_line(answer, at - 119.5)
    assert line is not None and line.startswith(
        "registry access ends by 2026-12-03T07:02:03Z (in 120 s)"
    )
    assert access_end_line(answer, at) == "registry access ended (by 2026-12-03T07:02:03Z)"
    assert access_end_line({"registryAccessEndsBy": None}, at) is None
    assert access_end_line({"registryAccessEndsBy": "yesterday"}, at) is None
    assert access_end_line(None, at) is None
