"""Nothing is issued or delivered to a device that is not active (issue 12, defect 14): a
pending device (awaiting approval) that published a reject was minted a password."""

from __future__ import annotations

from sqlmodel import select

from fleet.db.devices import Delivery
from fleet.db.models import TokenPassword
from fleet.services import Services
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker


def _passwords(fleet: Services) -> int:
    with fleet.ctx.db.session() as s:
        return len(s.exec(select(TokenPassword)).all())


def _deliveries(fleet: Services) -> int:
    with fleet.ctx.db.session() as s:
        return len(s.exec(select(Delivery)).all())


def test_a_pending_device_that_rejects_is_issued_nothing(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fleet.groups.update("pilots", require_approval=True, actor="t")
    fake = new_device("rpi-0001")
    view, _ = fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    assert view.status == "pending"
    passwords, deliveries, published = _passwords(fleet), _deliveries(fleet), len(broker.published)
    for _ in range(3):
        status(
            fleet,
            fake.device_id,
            type="reject",
            kind="credentials",
            version=0,
            reason="CredentialsRefused",
        )
    assert (_passwords(fleet), _deliveries(fleet)) == (passwords, deliveries)
    assert len(broker.published) == published
    assert fleet.devices.show(fake.device_id).status == "pending"
    # approved, it gets its first password as usual
    fleet.devices.approve(fake.device_id, actor="t")
    assert _passwords(fleet) == passwords + 1
