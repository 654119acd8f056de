"""``fleet device enable`` on a device that is not disabled: 409, and the broker untouched
(issue 12, defect 11: it answered 409 after clearing the retained credentials of a delivery
still pending)."""

from __future__ import annotations

import pytest

from fleet.domain.errors import ConflictError
from fleet.mqtt import topics
from fleet.services import Services
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker


def test_enable_on_an_active_device_changes_nothing(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fake = new_device("rpi-0001")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    credentials = topics.credentials_topic(fake.device_id)
    retained = broker.retained[credentials]  # the first credentials, not yet acknowledged
    published = len(broker.published)
    with pytest.raises(ConflictError) as caught:
        fleet.devices.enable(fake.device_id, actor="t")
    assert caught.value.code == "NotDisabled"
    assert broker.retained[credentials] == retained
    assert len(broker.published) == published
    assert fleet.devices.show(fake.device_id).pending_deliveries == 1
