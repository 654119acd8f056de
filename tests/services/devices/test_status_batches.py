"""Status messages handled in batches (one transaction for what waits together) do exactly what
the same messages do one by one, in far fewer statements; one failing message costs only itself."""

from __future__ import annotations

import json

import pytest

from fleet.services import Services
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker
from tests.support.statements import counted

DEVICES = 12


def ack(version: int = 1) -> bytes:
    return json.dumps({"type": "ack", "kind": "credentials", "version": version}).encode()


def enrolled(fleet: Services, secret: str, prefix: str, count: int = DEVICES) -> list[str]:
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    for device_id in ids:
        fleet.devices.enroll(device_id, secret, *new_device(device_id).keys)
    return ids


def outcome(fleet: Services, device_id: str) -> tuple[object, ...]:
    view = fleet.devices.show(device_id)
    return (
        view.acked_credentials_version,
        view.active_slot,
        view.pending_deliveries,
        view.last_seen_at,
        view.active_expiry,
    )


def test_a_batch_of_acks_ends_as_the_same_acks_one_by_one_in_a_few_statements(
    fleet: Services, secret: str
) -> None:
    alone, together = enrolled(fleet, secret, "one"), enrolled(fleet, secret, "all")
    with counted(fleet) as one_by_one:
        for device_id in alone:
            fleet.delivery.handle_status(device_id, ack())
    with counted(fleet) as batched:
        fleet.delivery.handle_statuses([(device_id, ack()) for device_id in together])
    for a, b in zip(alone, together, strict=True):
        assert outcome(fleet, a) == outcome(fleet, b)
        assert outcome(fleet, b)[:3] == (1, "password1", 0)
    # Alone, each message: a write and a read of the device, reads of the delivery and of the
    # password, two writes. Together: each read once, the writes grouped at the commit.
    assert len(one_by_one) >= 6 * DEVICES
    assert len(batched) <= 8, batched


def test_a_batch_keeps_each_devices_messages_in_their_order(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    """hello (nothing held: sent again), then the ack, then a hello holding it: as in
    tests/services/devices/test_device_service.py's test_hello_and_ack, in one batch."""
    (device_id,) = enrolled(fleet, secret, "order", 1)
    before = len(broker.published)
    hello0 = json.dumps({"type": "hello", "versions": {"credentials": 0}}).encode()
    hello1 = json.dumps({"type": "hello", "versions": {"credentials": 1}}).encode()
    fleet.delivery.handle_statuses([(device_id, hello0), (device_id, ack()), (device_id, hello1)])
    assert outcome(fleet, device_id)[:3] == (1, "password1", 0)
    assert len(broker.published) == before  # acked in the same batch: nothing to send again


def test_junk_and_unknown_devices_in_a_batch_change_nothing_of_the_rest(
    fleet: Services, secret: str
) -> None:
    ids = enrolled(fleet, secret, "junk", 3)
    fleet.delivery.handle_statuses(
        [
            ("nobody", ack()),
            (ids[0], b"not json"),
            (ids[0], ack()),
            (ids[1], b'{"type": "ack", "kind": "credentials", "version": 99}'),
            (ids[2], b"{" * 10_000),
        ]
    )
    assert outcome(fleet, ids[0])[:3] == (1, "password1", 0)
    assert outcome(fleet, ids[1])[:3] == (0, None, 1)  # still waiting for its version 1
    assert outcome(fleet, ids[2])[:3] == (0, None, 1)


def test_one_failing_message_is_handled_alone_and_the_others_are_kept(
    fleet: Services, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = enrolled(fleet, secret, "fail", 4)
    real_ack = fleet.delivery._ack

    def ack_or_fail(s, device, message, *known):  # type: ignore[no-untyped-def]
        if device.device_id == ids[1]:
            raise RuntimeError("one bad row")
        return real_ack(s, device, message, *known)

    monkeypatch.setattr(fleet.delivery, "_ack", ack_or_fail)
    fleet.delivery.handle_statuses([(device_id, ack()) for device_id in ids])
    assert [outcome(fleet, d)[0] for d in ids] == [1, 0, 1, 1]


def test_a_single_message_still_raises_its_error(
    fleet: Services, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (device_id,) = enrolled(fleet, secret, "single", 1)

    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("bad row")

    monkeypatch.setattr(fleet.delivery, "_ack", fail)
    with pytest.raises(RuntimeError):
        status(fleet, device_id, type="ack", kind="credentials", version=1)


def test_a_batch_redone_message_by_message_counts_each_ack_once(
    fleet: Services, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.metrics import metrics

    ids = enrolled(fleet, secret, "count", 4)
    real_ack = fleet.delivery._ack

    def ack_or_fail(s, device, message, *known):  # type: ignore[no-untyped-def]
        if device.device_id == ids[1]:
            raise RuntimeError("one bad row")
        return real_ack(s, device, message, *known)

    def acknowledged() -> float:
        found = metrics().registry.get_sample_value("fleet_deliveries_acknowledged_total")
        return found or 0.0

    before = acknowledged()
    monkeypatch.setattr(fleet.delivery, "_ack", ack_or_fail)
    # The first device's ack is made, then undone with the failing batch, then made again alone.
    fleet.delivery.handle_statuses([(device_id, ack()) for device_id in ids])
    assert acknowledged() - before == 3
