"""Every status message handled twice is handled once (issue 15): on MQTT 3.1.1 (RabbitMQ 3.10)
there are no shared subscriptions, so every fleet server hears every status message. A second
ack, hello, refusal or pull report leaves the deliveries, the passwords and the device as the
first one did (it is seen again: last_seen_at moves, nothing else)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from fleet.db.devices import Delivery, Device
from fleet.db.models import AuditEvent, TokenPassword
from fleet.services import Services
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker


def snapshot(fleet: Services) -> dict[str, Any]:
    with fleet.ctx.db.session() as s:
        device = s.exec(select(Device)).one()
        deliveries = [
            (d.version, d.kind, d.state, d.slot)
            for d in s.exec(select(Delivery).order_by(Delivery.version)).all()  # type: ignore[arg-type]
        ]
        passwords = s.exec(select(func.count()).select_from(TokenPassword)).one()
        reissues = s.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action != "device.envelope.reject")
        ).one()
        return {
            "deliveries": deliveries,
            "passwords": passwords,
            "events": reissues,
            "device": (
                device.last_version,
                device.acked_credentials_version,
                device.active_slot,
                device.status,
                device.last_pull_ok,
            ),
        }


def twice(fleet: Services, device_id: str, **message: object) -> tuple[dict, dict]:  # type: ignore[type-arg]
    status(fleet, device_id, **message)
    once = snapshot(fleet)
    status(fleet, device_id, **message)
    return once, snapshot(fleet)


@pytest.fixture
def enrolled(fleet: Services, broker: FakeBroker, secret: str) -> str:
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    return "rpi-0001"


def test_an_ack_twice(fleet: Services, enrolled: str) -> None:
    once, again = twice(fleet, enrolled, type="ack", kind="credentials", version=1)
    assert once["device"][1] == 1  # the first one acknowledged it
    assert again == once


def test_a_hello_twice_and_a_lost_credentials_hello_twice(fleet: Services, enrolled: str) -> None:
    status(fleet, enrolled, type="ack", kind="credentials", version=1)
    once, again = twice(fleet, enrolled, type="hello", versions={"credentials": 1, "command": 0})
    assert again == once
    # A device that lost what it held: one new password, not one per server that heard it.
    fleet.ctx.clock.advance(hours=1)  # type: ignore[attr-defined]
    once, again = twice(fleet, enrolled, type="hello", versions={"credentials": 0, "command": 0})
    assert len(once["deliveries"]) == 2
    assert again == once


def test_a_refusal_twice_reissues_once(fleet: Services, enrolled: str) -> None:
    once, again = twice(
        fleet, enrolled, type="reject", kind="credentials", version=1, reason="CredentialsRefused"
    )
    assert len(once["deliveries"]) == 2  # the refused password was replaced, once
    assert again == once


def test_a_pull_report_twice(fleet: Services, enrolled: str) -> None:
    once, again = twice(fleet, enrolled, type="pull", ok=True, image="edge/app:1.0")
    assert once["device"][4] is True
    assert again == once
