"""Enrollment, enable and rotation run at the same moment, on SQLite and PostgreSQL (issue 12,
defects 1, 2 and 9, and the enable and rotate races).

Each test runs many rounds of two requests released together by a barrier: exactly one may
win, the other gets the clean error a sequential loser gets, and the broker holds the winner's
login. The broker is the recording fake, so a test sees every login the service provisioned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from device_agent.protocol.envelope import Opened
from fleet.db.devices import DELIVERY_PENDING, Delivery, Device, EnrollmentSecret
from fleet.db.models import AuditEvent, Token, TokenPassword
from fleet.domain.errors import AuthenticationError, ConflictError
from fleet.mqtt import topics
from fleet.services import Services
from fleet.services.reconciler import Reconciler
from fleet.services.views import DeviceView
from tests.conftest import FakeClock
from tests.services.devices.conftest import FakeDevice, new_device, status
from tests.services.devices.races import at_once, split
from tests.services.devices.test_device_service import snapshot
from tests.support.fake_broker import FakeBroker

ROUNDS = 12
ME = "test"


@pytest.fixture
def provisioned(broker: FakeBroker, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many times each broker login was provisioned (set a password)."""
    counts: Counter[str] = Counter()
    real = broker.provision_device

    def recording(device_id: str, username: str, password: str) -> None:
        counts[username] += 1
        real(device_id, username, password)

    monkeypatch.setattr(broker, "provision_device", recording)
    yield counts


def _enroll(services: Services, fake: FakeDevice, secret: str) -> Any:
    return lambda: services.devices.enroll(fake.device_id, secret, *fake.keys)


def _one_winner(
    results: list[Any], error: type[Exception], code: str
) -> tuple[int, tuple[DeviceView, str]]:
    """The index of the single success; every other result is ``error`` with ``code``."""
    won, lost = split(results)
    assert len(won) == 1, f"expected one winner, got {results!r}"
    assert all(isinstance(e, error) and e.code == code for e in lost), lost  # type: ignore[attr-defined]
    index = next(i for i, r in enumerate(results) if not isinstance(r, BaseException))
    return index, results[index]


def _credentials(services: Services, broker: FakeBroker, fake: FakeDevice) -> Opened:
    return fake.open(services, broker.retained[topics.credentials_topic(fake.device_id)])


def _pending_credentials(services: Services, device_id: str) -> list[Delivery]:
    with services.ctx.db.session() as s:
        pk = s.exec(select(Device.id).where(Device.device_id == device_id)).one()
        return list(
            s.exec(
                select(Delivery)
                .where(
                    Delivery.device_pk == pk,
                    Delivery.kind == "credentials",
                    Delivery.state == DELIVERY_PENDING,
                )
                .order_by(col(Delivery.version))
            ).all()
        )


def _audits(services: Services, action: str, target: str) -> int:
    with services.ctx.db.session() as s:
        rows = s.exec(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target)
        ).all()
        return len(rows)


# -- defect 1: a one-time code enrolls exactly one device --------------------------------------
def test_one_time_code_used_at_once_enrolls_one_device(
    fleet: Services, broker: FakeBroker, provisioned: Counter[str]
) -> None:
    for n in range(ROUNDS):
        code = fleet.groups.create_secret("pilots", one_time=True, actor=ME).value or ""
        fakes = [new_device(f"code-{n}-a"), new_device(f"code-{n}-b")]
        results = at_once(*(_enroll(fleet, f, code) for f in fakes))
        index, (view, password) = _one_winner(
            results, AuthenticationError, "InvalidEnrollmentSecret"
        )
        winner, loser = fakes[index], fakes[1 - index]
        assert view.device_id == winner.device_id
        assert broker.logins[winner.device_id]["password"] == password
        assert loser.device_id not in broker.logins and provisioned[loser.device_id] == 0
        with fleet.ctx.db.session() as s:
            assert s.exec(select(Device).where(Device.device_id == loser.device_id)).first() is None
            used = s.exec(
                select(EnrollmentSecret).where(EnrollmentSecret.used_by == winner.device_id)
            ).one()
            assert used.used_at is not None
        assert _credentials(fleet, broker, winner).version == 1


# -- defect 2: one new id enrolled twice at once ------------------------------------------------
def test_one_new_id_enrolled_at_once_keeps_the_winners_login(
    fleet: Services, broker: FakeBroker, secret: str, provisioned: Counter[str]
) -> None:
    for n in range(ROUNDS):
        device_id = f"twin-{n}"
        fakes = [new_device(device_id), new_device(device_id)]
        results = at_once(*(_enroll(fleet, f, secret) for f in fakes))
        index, (view, password) = _one_winner(results, ConflictError, "DeviceExists")
        assert view.status == "active"
        # the loser never touched the broker, so the winner's password is the one it holds
        assert provisioned[device_id] == 1
        assert broker.logins[device_id] == {
            "device_id": device_id,
            "password": password,
            "enabled": True,
        }
        opened = _credentials(fleet, broker, fakes[index])  # sealed to the winner's key
        assert fleet.registry_auth.authenticate(f"dev-{device_id}", opened.payload["password"])
        assert _audits(fleet, "device.enroll", device_id) == 1


def test_one_time_code_for_a_taken_id_is_not_spent(
    fleet: Services, broker: FakeBroker, secret: str, provisioned: Counter[str]
) -> None:
    """The same new id, once with the group secret and once with a one-time code: whichever
    loses, a code it carried is still unused, and the winner's login is the broker's."""
    for n in range(ROUNDS):
        device_id = f"mixed-{n}"
        code = fleet.groups.create_secret("pilots", one_time=True, actor=ME).value or ""
        fakes = [new_device(device_id), new_device(device_id)]
        results = at_once(_enroll(fleet, fakes[0], secret), _enroll(fleet, fakes[1], code))
        index, (_, password) = _one_winner(results, ConflictError, "DeviceExists")
        assert provisioned[device_id] == 1 and broker.logins[device_id]["password"] == password
        with fleet.ctx.db.session() as s:
            row = s.exec(
                select(EnrollmentSecret).where(
                    EnrollmentSecret.secret_hash == fleet.ctx.hasher.hash(code)
                )
            ).one()
        assert (row.used_by is None) == (index == 0), row


def test_reenrollment_at_once_has_one_winner(
    fleet: Services, broker: FakeBroker, secret: str, provisioned: Counter[str]
) -> None:
    first = new_device("again-1")
    fleet.devices.enroll(first.device_id, secret, *first.keys)
    for _ in range(ROUNDS):
        fleet.devices.allow_reenroll(first.device_id, actor=ME)
        provisioned.clear()
        fakes = [new_device(first.device_id), new_device(first.device_id)]
        results = at_once(*(_enroll(fleet, f, secret) for f in fakes))
        index, (view, password) = _one_winner(results, ConflictError, "DeviceExists")
        assert provisioned[first.device_id] == 1
        assert broker.logins[first.device_id]["password"] == password
        assert view.allow_reenroll is False
        opened = _credentials(fleet, broker, fakes[index])
        assert opened.version == view.last_version
        assert len(_pending_credentials(fleet, first.device_id)) == 1


def test_broker_failure_gives_the_code_and_the_id_back(fleet: Services, broker: FakeBroker) -> None:
    code = fleet.groups.create_secret("pilots", one_time=True, actor=ME).value or ""
    fake = new_device("retry-1")
    broker.down = True
    with pytest.raises(Exception, match="down"):
        fleet.devices.enroll(fake.device_id, code, *fake.keys)
    assert fleet.devices.list().items == ()
    broker.down = False
    view, password = fleet.devices.enroll(fake.device_id, code, *fake.keys)
    assert view.status == "active" and broker.logins[fake.device_id]["password"] == password


# -- defect 9: a disabled device stays disabled -------------------------------------------------
def _password_rows(services: Services, device_id: str) -> list[TokenPassword]:
    with services.ctx.db.session() as s:
        token = s.exec(select(Token).where(Token.name == f"dev-{device_id}")).one()
        return list(s.exec(select(TokenPassword).where(TokenPassword.token_id == token.id)).all())


def test_reenrollment_of_a_disabled_device_is_refused(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fake = new_device("off-1")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    fleet.devices.allow_reenroll(fake.device_id, actor=ME)
    fleet.devices.disable(fake.device_id, actor=ME)
    login = dict(broker.logins[fake.device_id])
    published = len(broker.published)
    with pytest.raises(ConflictError, match="until an operator enables it") as caught:
        fleet.devices.enroll(fake.device_id, secret, *new_device(fake.device_id).keys)
    assert caught.value.code == "DeviceDisabled"
    view = fleet.devices.show(fake.device_id)
    assert view.status == "disabled" and view.allow_reenroll is True
    assert fleet.tokens.show(f"dev-{fake.device_id}").status == "disabled"
    assert _password_rows(fleet, fake.device_id) == []
    assert broker.logins[fake.device_id] == login and len(broker.published) == published
    # enabled again, it may re-enroll as it was allowed to
    fleet.devices.enable(fake.device_id, actor=ME)
    again = new_device(fake.device_id)
    view, password = fleet.devices.enroll(fake.device_id, secret, *again.keys)
    assert view.status == "active" and broker.logins[fake.device_id]["password"] == password
    assert broker.logins[fake.device_id]["enabled"] is True


def test_reenrollment_racing_disable_never_leaves_a_half_alive_device(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fake = new_device("half-1")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    for _ in range(ROUNDS):
        fleet.devices.allow_reenroll(fake.device_id, actor=ME)
        results = at_once(
            _enroll(fleet, new_device(fake.device_id), secret),
            lambda: fleet.devices.disable(fake.device_id, actor=ME),
        )
        assert not isinstance(results[1], BaseException), results
        if isinstance(results[0], BaseException):
            assert isinstance(results[0], ConflictError), results
        view = fleet.devices.show(fake.device_id)
        assert view.status == "disabled"
        assert fleet.tokens.show(f"dev-{fake.device_id}").status == "disabled"
        assert _password_rows(fleet, fake.device_id) == []
        assert broker.logins[fake.device_id]["enabled"] is False
        fleet.devices.enable(fake.device_id, actor=ME)


# -- fleet device enable, twice at once ---------------------------------------------------------
def test_enable_at_once_enables_once(fleet: Services, broker: FakeBroker, secret: str) -> None:
    fake = new_device("on-1")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    credentials = topics.credentials_topic(fake.device_id)
    for _ in range(ROUNDS):
        fleet.devices.disable(fake.device_id, actor=ME)
        enables = _audits(fleet, "device.enable", fake.device_id)
        start = len(broker.published)
        results = at_once(
            lambda: fleet.devices.enable(fake.device_id, actor=ME),
            lambda: fleet.devices.enable(fake.device_id, actor=ME),
        )
        _, view = _one_winner_view(results)
        assert view.status == "active" and broker.logins[fake.device_id]["enabled"] is True
        assert _audits(fleet, "device.enable", fake.device_id) == enables + 1
        clears = [p for p in broker.published[start:] if p.topic == credentials and not p.payload]
        assert len(clears) == 1, broker.published[start:]
        pending = _pending_credentials(fleet, fake.device_id)
        assert [d.version for d in pending] == [view.last_version]
        # what the broker retains is that one delivery, and its password works
        opened = _credentials(fleet, broker, fake)
        assert opened.version == view.last_version
        assert fleet.registry_auth.authenticate(f"dev-{fake.device_id}", opened.payload["password"])


def _one_winner_view(results: list[Any]) -> tuple[int, DeviceView]:
    won, lost = split(results)
    assert len(won) == 1, f"expected one winner, got {results!r}"
    assert all(isinstance(e, ConflictError) and e.code == "NotDisabled" for e in lost), lost
    index = next(i for i, r in enumerate(results) if not isinstance(r, BaseException))
    return index, results[index]


def test_enable_with_the_broker_down_leaves_the_device_disabled(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fake = new_device("on-2")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    fleet.devices.disable(fake.device_id, actor=ME)
    before = snapshot(fleet, broker)
    broker.down = True
    with pytest.raises(Exception, match="down"):
        fleet.devices.enable(fake.device_id, actor=ME)
    assert snapshot(fleet, broker) == before
    broker.down = False
    assert fleet.devices.enable(fake.device_id, actor=ME).status == "active"


# -- rotation, twice at once, and against the scheduler -----------------------------------------
def _acked_device(fleet: Services, secret: str, device_id: str) -> FakeDevice:
    fake = new_device(device_id)
    fleet.devices.enroll(device_id, secret, *fake.keys)
    status(fleet, device_id, type="ack", kind="credentials", version=1, slot="password1")
    return fake


def _rotate(fleet: Services, device_id: str) -> Any:
    return lambda: fleet.devices.rotate(device_id, actor=ME)


def _check_rotated(fleet: Services, broker: FakeBroker, fake: FakeDevice, old: str) -> None:
    """One pending delivery, retained, carrying the password its slot holds; the slot in
    use still works, and acknowledging the new one moves the device to it."""
    device_id = fake.device_id
    pending = _pending_credentials(fleet, device_id)
    assert len(pending) == 1, pending
    view = fleet.devices.show(device_id)  # the newest envelope: these credentials or a command
    assert pending[0].version <= view.last_version and pending[0].slot == "password2"
    opened = _credentials(fleet, broker, fake)
    assert opened.version == pending[0].version
    assert fleet.registry_auth.authenticate(f"dev-{device_id}", opened.payload["password"])
    assert fleet.registry_auth.authenticate(f"dev-{device_id}", old)  # no lost slot
    status(fleet, device_id, type="ack", kind="credentials", version=opened.version)
    assert fleet.devices.show(device_id).active_slot == "password2"


def test_rotate_at_once_delivers_the_password_the_slot_holds(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    for n in range(ROUNDS):
        fake = _acked_device(fleet, secret, f"spin-{n}")
        old = _credentials(fleet, broker, fake).payload["password"]
        rotate = _rotate(fleet, fake.device_id)
        results = at_once(rotate, rotate)
        won, lost = split(results)
        assert lost == [] and len(won) == 2, results
        _check_rotated(fleet, broker, fake, old)


def test_rotate_racing_the_scheduler_delivers_the_password_the_slot_holds(
    fleet: Services, broker: FakeBroker, secret: str, clock: FakeClock
) -> None:
    reconciler = Reconciler(fleet.ctx, fleet.devices, fleet.delivery)
    for n in range(ROUNDS):
        fake = _acked_device(fleet, secret, f"sched-{n}")
        old = _credentials(fleet, broker, fake).payload["password"]
        clock.advance(days=24)  # inside the 7-day rotation window of the 30-day password
        results = at_once(_rotate(fleet, fake.device_id), reconciler.run_pass)
        assert not any(isinstance(r, BaseException) for r in results), results
        assert results[1].skipped == 0 and results[1].failed_steps == 0, results[1]
        _check_rotated(fleet, broker, fake, old)
        clock.advance(seconds=-timedelta(days=24).total_seconds())


# -- an operator acting on a device while it enrolls --------------------------------------------
def _during_provisioning(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch, act: Any
) -> list[Any]:
    """Run ``act(device_id)`` inside the broker call of the next enrollment; its outcome."""
    seen: list[Any] = []
    real = broker.provision_device

    def provision(device_id: str, username: str, password: str) -> None:
        try:
            seen.append(act(device_id))
        except Exception as exc:
            seen.append(exc)
        real(device_id, username, password)

    monkeypatch.setattr(broker, "provision_device", provision)
    return seen


def test_disable_while_a_device_enrolls_is_refused_and_the_enrollment_finishes(
    fleet: Services, broker: FakeBroker, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _during_provisioning(
        broker, monkeypatch, lambda device_id: fleet.devices.disable(device_id, actor=ME)
    )
    view, password = fleet.devices.enroll("busy-1", secret, *new_device("busy-1").keys)
    assert isinstance(seen[0], ConflictError) and seen[0].code == "Enrolling", seen
    assert view.status == "active" and broker.logins["busy-1"]["password"] == password
    results = _during_provisioning(
        broker,
        monkeypatch,
        lambda device_id: fleet.devices.disable_many([device_id], actor=ME, reason="t"),
    )
    fleet.devices.enroll("busy-2", secret, *new_device("busy-2").keys)
    assert [r.outcome for r in results[0]] == ["not disabled"]
    assert fleet.devices.show("busy-2").status == "active"


def test_delete_while_a_device_enrolls_enrolls_nothing_and_gives_the_code_back(
    fleet: Services, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = fleet.groups.create_secret("pilots", one_time=True, actor=ME).value or ""
    seen = _during_provisioning(
        broker, monkeypatch, lambda device_id: fleet.devices.delete(device_id, actor=ME)
    )
    with pytest.raises(ConflictError) as caught:
        fleet.devices.enroll("gone-1", code, *new_device("gone-1").keys)
    assert caught.value.code == "DeviceChanged" and seen == [None]
    assert fleet.devices.list().items == ()
    monkeypatch.undo()
    view, _ = fleet.devices.enroll("gone-1", code, *new_device("gone-1").keys)
    assert view.status == "active"


def _interrupted_claim(fleet: Services, secret: str, device_id: str) -> FakeDevice:
    """What a server that died between the claim and the broker leaves behind."""
    from fleet.services import enrollment  # here: the other tests also run on older code

    fake = new_device(device_id)
    with fleet.ctx.db.session() as s:
        now = fleet.ctx.clock()
        entry = enrollment.find_secret(s, fleet.ctx.hasher, now, secret)
        enrollment.claim(s, entry, fake.device_id, fake.keys, now)
    return fake


def test_an_interrupted_enrollment_holds_the_id_until_deleted(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    """A fresh claim may be a live request: the id is refused with a message saying how to free
    it, and deleting it frees it."""
    fake = _interrupted_claim(fleet, secret, "stuck-1")
    with pytest.raises(ConflictError, match="an operator may delete the device now") as caught:
        fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    assert caught.value.code == "DeviceExists" and "try again in 2 minutes" in caught.value.message
    fleet.devices.delete(fake.device_id, actor=ME)
    view, password = fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    assert view.status == "active" and broker.logins[fake.device_id]["password"] == password


def test_an_interrupted_enrollment_is_taken_over_once_stale(
    fleet: Services, broker: FakeBroker, secret: str, clock: FakeClock
) -> None:
    """Left alone, the claim refused the device for good (its agent re-running enroll got 409
    forever). Once STALE_CLAIM old, the next requests take it over, exactly one of them when
    they come at once, with the winner's new keys and a broker login that works."""
    from fleet.services.enrollment import STALE_CLAIM

    for n in range(ROUNDS):
        _interrupted_claim(fleet, secret, f"stale-{n}")
        clock.advance(seconds=STALE_CLAIM.total_seconds())
        devices = [new_device(f"stale-{n}"), new_device(f"stale-{n}")]
        results = at_once(
            *(lambda d=d: fleet.devices.enroll(d.device_id, secret, *d.keys) for d in devices)
        )
        won, lost = split(results)
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], ConflictError) and lost[0].code == "DeviceExists"
        view, password = won[0]
        assert view.status == "active"
        assert broker.logins[view.device_id]["password"] == password
        winner = devices[results.index(won[0])]
        with fleet.ctx.db.session() as s:
            row = s.exec(select(Device).where(Device.device_id == view.device_id)).one()
        assert (row.x25519_public, row.ed25519_public) == winner.keys


def test_pull_racing_rotate_queues_both(fleet: Services, broker: FakeBroker, secret: str) -> None:
    """A pull command and a rotation at once each take their own envelope version (the pull
    read the device before the rotation wrote it: a 500 on the deliveries' unique version)."""
    for n in range(ROUNDS):
        fake = _acked_device(fleet, secret, f"pull-{n}")
        old = _credentials(fleet, broker, fake).payload["password"]
        results = at_once(
            _rotate(fleet, fake.device_id),
            lambda d=fake.device_id: fleet.devices.pull(d, ["edge/app:1"], actor=ME),
        )
        assert not any(isinstance(r, BaseException) for r in results), results
        with fleet.ctx.db.session() as s:
            pk = s.exec(select(Device.id).where(Device.device_id == fake.device_id)).one()
            versions = s.exec(select(Delivery.version).where(Delivery.device_pk == pk)).all()
        assert sorted(versions) == [1, 2, 3]
        _check_rotated(fleet, broker, fake, old)
