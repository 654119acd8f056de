from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from device_agent.protocol.envelope import StaleVersion, WrongDevice
from fleet.db.devices import Delivery, Device
from fleet.db.models import AuditEvent, TokenPassword
from fleet.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from fleet.domain.rules import RepositoryActions
from fleet.mqtt import topics
from fleet.services import Services
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker

ME = "test"


def snapshot(services: Services, broker: FakeBroker) -> dict[str, Any]:
    """Every row a status message could touch, and what the broker was sent."""
    with services.ctx.db.session() as s:
        return {
            "devices": [d.model_dump() for d in s.exec(select(Device).order_by(col(Device.id)))],
            "deliveries": [
                d.model_dump() for d in s.exec(select(Delivery).order_by(col(Delivery.id)))
            ],
            "passwords": [
                p.model_dump()
                for p in s.exec(select(TokenPassword).order_by(col(TokenPassword.id)))
            ],
            "audit": [
                a.model_dump() for a in s.exec(select(AuditEvent).order_by(col(AuditEvent.id)))
            ],
            "published": list(broker.published),
            "retained": dict(broker.retained),
        }


def test_group_scope_map_must_be_read_only(fleet: Services) -> None:
    with pytest.raises(ValidationError) as info:
        fleet.groups.create("writers", scope_map="_repositories_push", actor=ME)
    assert info.value.code == "ScopeMapNotReadOnly"
    fleet.groups.create("readers", scope_map="_repositories_pull_metadata_read", actor=ME)
    with pytest.raises(ValidationError) as info:  # nor can the map gain write later
        fleet.scope_maps.update(
            "devices-read", add=[RepositoryActions("edge/x", ("content/write",))], actor=ME
        )
    assert info.value.code == "ScopeMapNotReadOnly"
    fleet.scope_maps.update(
        "devices-read", add=[RepositoryActions("more/*", ("content/read",))], actor=ME
    )
    with pytest.raises(ValidationError):
        fleet.groups.create(
            "bad-window",
            scope_map="devices-read",
            password_lifetime_days=7,
            rotation_window_days=7,
            actor=ME,
        )


def test_enroll_creates_token_login_and_sealed_delivery(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    view, mqtt_password = fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    assert view.status == "active" and view.token == "dev-rpi-0001"
    assert broker.logins["rpi-0001"]["password"] == mqtt_password
    assert mqtt_password.startswith("fltm_")
    token = fleet.tokens.show("dev-rpi-0001")
    assert token.scope_map == "devices-read" and token.status == "enabled"
    assert [p.name for p in token.passwords] == ["password1"]
    assert token.passwords[0].expiry == fleet.ctx.clock() + timedelta(days=30)
    envelope = broker.retained[topics.credentials_topic("rpi-0001")]
    opened = dev.open(fleet, envelope)
    assert opened.version == 1
    payload = opened.payload
    assert payload["username"] == "dev-rpi-0001" and payload["slot"] == "password1"
    principal = fleet.registry_auth.authenticate("dev-rpi-0001", payload["password"])
    assert principal is not None
    assert principal.allowed("edge/app") == {"content/read", "metadata/read"}
    # only that device can open it
    with pytest.raises(WrongDevice):
        new_device("rpi-0002").open(fleet, envelope)
    assert fleet.devices.show("rpi-0001").pending_deliveries == 1


def test_enrollment_refusals_change_nothing(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("rpi-0001", "flte_wrong", *dev.keys)
    with pytest.raises(ValidationError):
        fleet.devices.enroll("bad id!", secret, *dev.keys)
    with pytest.raises(ValidationError):
        fleet.devices.enroll("rpi-0001", secret, "bm90IGEga2V5", dev.keys[1])
    assert fleet.devices.list().items == () and broker.logins == {}
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    with pytest.raises(ConflictError):  # no takeover
        fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    fleet.devices.allow_reenroll("rpi-0001", actor=ME)
    again = new_device("rpi-0001")
    view, _ = fleet.devices.enroll("rpi-0001", secret, *again.keys)
    assert view.last_version == 2
    opened = again.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    assert opened.version == 2


def test_one_time_codes_revoked_and_expired_secrets(fleet: Services, clock) -> None:  # type: ignore[no-untyped-def]
    code = fleet.groups.create_secret("pilots", one_time=True, actor=ME)
    fleet.devices.enroll("dev-a1", code.value or "", *new_device("dev-a1").keys)
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("dev-a2", code.value or "", *new_device("dev-a2").keys)
    used = fleet.groups.show("pilots").secrets[0]
    assert used.used_by == "dev-a1" and used.value is None
    revoked = fleet.groups.create_secret("pilots", actor=ME)
    fleet.groups.revoke_secret("pilots", revoked.id, actor=ME)
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("dev-a3", revoked.value or "", *new_device("dev-a3").keys)
    short = fleet.groups.create_secret("pilots", expires_at=clock() + timedelta(hours=1), actor=ME)
    clock.advance(hours=2)
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("dev-a4", short.value or "", *new_device("dev-a4").keys)


def test_approval_flow(fleet: Services, broker: FakeBroker) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor=ME)
    value = fleet.groups.create_secret("careful", actor=ME).value or ""
    dev = new_device("rpi-0009")
    view, _ = fleet.devices.enroll("rpi-0009", value, *dev.keys)
    assert view.status == "pending" and view.pending_deliveries == 0
    assert topics.credentials_topic("rpi-0009") not in broker.retained
    assert fleet.tokens.show("dev-rpi-0009").status == "disabled"
    approved = fleet.devices.approve("rpi-0009", actor=ME)
    assert approved.status == "active"
    assert fleet.tokens.show("dev-rpi-0009").status == "enabled"
    assert dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0009")]).version == 1
    with pytest.raises(ConflictError):
        fleet.devices.approve("rpi-0009", actor=ME)


def test_reject_removes_a_pending_device_and_nothing_else(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor=ME)
    value = fleet.groups.create_secret("careful", actor=ME).value or ""
    for device_id in ("rpi-0010", "rpi-0011"):
        fleet.devices.enroll(device_id, value, *new_device(device_id).keys)
    fleet.devices.enroll("rpi-0012", secret, *new_device("rpi-0012").keys)  # active
    queue = fleet.devices.approval_queue("careful")
    assert [d.device_id for d in queue.devices] == ["rpi-0010", "rpi-0011"] and queue.total == 2

    fleet.devices.reject("rpi-0010", actor="operator:alice")
    with pytest.raises(NotFoundError):
        fleet.devices.show("rpi-0010")
    with pytest.raises(NotFoundError):
        fleet.tokens.show("dev-rpi-0010")
    assert "rpi-0010" not in broker.logins and "rpi-0011" in broker.logins
    queue = fleet.devices.approval_queue("careful")
    assert [d.device_id for d in queue.devices] == ["rpi-0011"] and queue.total == 1
    with fleet.ctx.db.session() as s:
        last = s.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc())).first()
    assert last is not None
    assert (last.actor, last.action, last.target) == ("operator:alice", "device.reject", "rpi-0010")

    before = snapshot(fleet, broker)
    with pytest.raises(ConflictError, match="'rpi-0012' is active, not pending"):
        fleet.devices.reject("rpi-0012", actor=ME)
    assert snapshot(fleet, broker) == before
    assert fleet.devices.show("rpi-0012").status == "active"
    with pytest.raises(NotFoundError):
        fleet.devices.approval_queue("nobody")
    # a rejected device may enroll again, and waits for approval again
    again, _ = fleet.devices.enroll("rpi-0010", value, *new_device("rpi-0010").keys)
    assert again.status == "pending"


def test_hello_and_ack(fleet: Services, broker: FakeBroker, secret: str) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    before = len(broker.published)
    status(fleet, "rpi-0001", type="hello", versions={"credentials": 0, "command": 0})
    assert len(broker.published) == before + 1  # sent again: the device holds nothing newer
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=1, slot="password1")
    view = fleet.devices.show("rpi-0001")
    assert view.pending_deliveries == 0 and view.active_slot == "password1"
    assert view.acked_credentials_version == 1 and view.last_seen_at == fleet.ctx.clock()
    status(fleet, "rpi-0001", type="hello", versions={"credentials": 1})
    assert len(broker.published) == before + 1  # nothing newer to send
    # Junk changes nothing at all (the clock stands still, so even last_seen_at, which any
    # well-formed message from the device moves, keeps its value).
    before = snapshot(fleet, broker)
    junk_messages = (
        b"not json",
        b"[1]",
        b'{"type": "ack", "version": "x"}',
        b'{"type": "ack", "kind": "credentials", "version": 99}',
        b'{"type": "hello", "versions": "all of them"}',
        b'{"type": "surprise"}',
        b"{" * 10_000,
    )
    for junk in junk_messages:
        fleet.delivery.handle_status("rpi-0001", junk)
        assert snapshot(fleet, broker) == before, junk[:40]
    fleet.delivery.handle_status("nobody", b'{"type": "hello"}')
    assert snapshot(fleet, broker) == before


def test_rotation_uses_the_other_slot_and_old_one_keeps_working(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    first = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=1)
    fleet.devices.rotate("rpi-0001", actor=ME)
    second = dev.open(
        fleet, broker.retained[topics.credentials_topic("rpi-0001")], last_version=first.version
    )
    assert second.payload["slot"] == "password2" and second.version == 2
    for opened in (first, second):
        assert fleet.registry_auth.authenticate("dev-rpi-0001", opened.payload["password"])
    with pytest.raises(StaleVersion):  # a replay of the first never replaces the second
        dev.open(fleet, fleet_envelope_v1 := broker.published[0].payload, last_version=2)
    assert fleet_envelope_v1


def test_disable_cuts_token_and_login_and_sends_wipe(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    creds = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    fleet.devices.disable("rpi-0001", actor=ME)
    assert fleet.registry_auth.authenticate("dev-rpi-0001", creds.payload["password"]) is None
    assert broker.logins["rpi-0001"]["enabled"] is False
    wipe = dev.open(fleet, broker.retained[topics.commands_topic("rpi-0001")])
    assert wipe.payload == {"kind": "command", "command": "wipe"}
    enabled = fleet.devices.enable("rpi-0001", actor=ME)
    assert enabled.status == "active" and broker.logins["rpi-0001"]["enabled"] is True
    assert topics.commands_topic("rpi-0001") not in broker.retained  # the wipe is cleared
    fresh = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    assert fresh.version > wipe.version
    assert fleet.registry_auth.authenticate("dev-rpi-0001", fresh.payload["password"])
    # The password held before the disable (copied off a stolen device, say) stays dead.
    assert fleet.registry_auth.authenticate("dev-rpi-0001", creds.payload["password"]) is None


def test_a_rotated_device_disabled_and_enabled_keeps_neither_old_password(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    first = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=1)
    fleet.devices.rotate("rpi-0001", actor=ME)  # both slots hold a live password now
    second = dev.open(
        fleet, broker.retained[topics.credentials_topic("rpi-0001")], last_version=first.version
    )
    fleet.devices.disable_many(["rpi-0001"], actor=ME, reason="stolen")
    fleet.devices.enable("rpi-0001", actor=ME)
    fresh = dev.open(
        fleet, broker.retained[topics.credentials_topic("rpi-0001")], last_version=second.version
    )
    assert fleet.registry_auth.authenticate("dev-rpi-0001", fresh.payload["password"])
    for old in (first, second):
        assert fleet.registry_auth.authenticate("dev-rpi-0001", old.payload["password"]) is None
    token = fleet.tokens.show("dev-rpi-0001")
    assert [p.name for p in token.passwords] == [fresh.payload["slot"]]


def test_device_tokens_are_guarded(fleet: Services, secret: str) -> None:
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    with pytest.raises(ConflictError):
        fleet.tokens.update("dev-rpi-0001", scope_map="_repositories_admin", actor=ME)
    with pytest.raises(ConflictError):
        fleet.tokens.delete("dev-rpi-0001", actor=ME)
    with pytest.raises(ConflictError):
        fleet.groups.delete("pilots", actor=ME)


def test_delete_device(fleet: Services, broker: FakeBroker, secret: str) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    creds = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    fleet.devices.delete("rpi-0001", actor=ME)
    assert "rpi-0001" not in broker.logins
    assert topics.credentials_topic("rpi-0001") not in broker.retained
    assert fleet.registry_auth.authenticate("dev-rpi-0001", creds.payload["password"]) is None
    with pytest.raises(NotFoundError):
        fleet.devices.show("rpi-0001")
    fleet.groups.delete("pilots", actor=ME)


def test_broker_down_at_enrollment_changes_nothing(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    from fleet.mqtt.errors import BrokerUnavailableError

    broker.down = True
    with pytest.raises(BrokerUnavailableError):
        fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    assert fleet.devices.list().items == ()
    broker.down = False
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)


def test_publish_failure_leaves_delivery_pending_for_retry(
    fleet: Services, broker: FakeBroker, secret: str, clock
) -> None:  # type: ignore[no-untyped-def]
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    broker.down = True
    fleet.devices.rotate("rpi-0001", actor=ME)  # queued, not published
    broker.down = False
    assert fleet.delivery.publish_pending(due_only=True) == 0  # backoff: not due yet
    clock.advance(seconds=31)
    assert fleet.delivery.publish_pending(due_only=True) == 1


def test_a_device_that_lost_its_store_gets_a_new_password(
    fleet: Services, broker: FakeBroker, secret: str, clock: FakeClock
) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    status(fleet, "rpi-0001", type="ack", kind="credentials", version=1)
    # a hello sent before the ack but handled after it (another worker) is not a loss
    status(fleet, "rpi-0001", type="hello", versions={"credentials": 0, "command": 0})
    assert fleet.devices.show("rpi-0001").last_version == 1
    clock.advance(minutes=5)
    status(fleet, "rpi-0001", type="hello", versions={"credentials": 0, "command": 0})
    fresh = dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")])
    assert fresh.version == 2 and fresh.payload["slot"] == "password2"
    assert fleet.registry_auth.authenticate("dev-rpi-0001", fresh.payload["password"])
    status(fleet, "rpi-0001", type="hello", versions={"credentials": 0, "command": 0})
    assert fleet.devices.show("rpi-0001").last_version == 2  # pending: sent again, not reissued


def test_a_refused_password_is_replaced_once(
    fleet: Services, broker: FakeBroker, secret: str
) -> None:
    dev = new_device("rpi-0001")
    fleet.devices.enroll("rpi-0001", secret, *dev.keys)
    status(
        fleet, "rpi-0001", type="reject", kind="credentials", version=1, reason="CredentialsRefused"
    )
    assert dev.open(fleet, broker.retained[topics.credentials_topic("rpi-0001")]).version == 2
    before = snapshot(fleet, broker)
    status(
        fleet, "rpi-0001", type="reject", kind="credentials", version=1, reason="CredentialsRefused"
    )  # an old refusal changes nothing but the audit trail
    status(
        fleet, "rpi-0001", type="reject", kind="credentials", version=2, reason="StaleVersion"
    )  # nor does noise
    after = snapshot(fleet, broker)
    assert fleet.devices.show("rpi-0001").last_version == 2
    assert [a["action"] for a in after["audit"][len(before["audit"]) :]] == [
        "device.envelope.reject",
        "device.envelope.reject",
    ]
    assert {**after, "audit": before["audit"]} == before
