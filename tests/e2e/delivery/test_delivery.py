"""Enrollment and sealed delivery over the real broker, proven with the real registry."""

from __future__ import annotations

import time
from typing import Any

import pytest

from device_agent.protocol.envelope import BadSignature, StaleVersion, WrongDevice
from tests.e2e.delivery.device import WireDevice
from tests.e2e.delivery.parts import Parts
from tests.support import skopeo
from tests.support.oci import build_oci_image
from tests.support.timing import scaled, wait_until

REFUSAL_SLACK_S = 1.0
RETRY_S = 0.25
RECLOSE_MARGIN_S = 1.0  # fleet's second close comes this long after the cache's TTL
WIPE_WAIT_S = 3.0  # the disable waits this long for an online device's wipe ack

pytestmark = pytest.mark.e2e


def enrolled(parts: Parts, device_id: str) -> WireDevice:
    device = WireDevice(device_id, parts.server.url, protocol=parts.mqtt_protocol)
    answer = device.enroll(parts.secret)
    assert answer.status_code == 201, answer.text
    return device


def push_image(parts: Parts, repo: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An operator pushes with a push token, so devices have something to pull."""
    made = parts.server.cli_ok(
        "token",
        "create",
        "--name",
        f"push-{repo.replace('/', '-')}",
        "--scope-map",
        "_repositories_push",
    ).json()
    creds = f"{made['name']}:{made['credentials']['passwords'][0]['value']}"
    image = build_oci_image(tmp_path / "image")
    pushed = skopeo.copy_to_registry(image, parts.registry.host_port, repo, "1.0", creds)
    assert pushed.ok, pushed.output


def test_each_device_reads_only_its_own_password_and_it_pulls(parts: Parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    push_image(parts, "edge/app", tmp_path)
    devices = [enrolled(parts, f"pi-{i}") for i in range(3)]
    for device in devices:
        assert device.connect().is_failure is False
        device.wait_for(lambda d=device: d.credentials is not None, "credentials")
    passwords = {d.credentials["password"] for d in devices}  # type: ignore[index]
    assert len(passwords) == 3
    for device in devices:
        creds = device.credentials
        assert creds is not None and creds["username"] == f"dev-{device.device_id}"
        pulled = skopeo.copy_from_registry(
            parts.registry.host_port,
            "edge/app",
            "1.0",
            tmp_path / f"pull-{device.device_id}",
            f"{creds['username']}:{creds['password']}",
        )
        assert pulled.ok, pulled.output
        # read-only: the device's token cannot push
        image = build_oci_image(tmp_path / f"img-{device.device_id}")
        refused = skopeo.copy_to_registry(
            image,
            parts.registry.host_port,
            "edge/app",
            "evil",
            f"{creds['username']}:{creds['password']}",
        )
        assert not refused.ok and skopeo.DENIED in refused.output
    # each device decrypts only its own delivery: B's envelope is refused by A's decoder
    a, b = devices[0], devices[1]
    b_envelope = next(p for t, p in b.messages if t.endswith("/credentials") and p)
    with pytest.raises(WrongDevice):
        a.open(b_envelope)
    # tampering and replay are refused by the decoder
    tampered = bytearray(b_envelope)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(BadSignature):
        b.open(bytes(tampered))
    with pytest.raises(StaleVersion):
        b.open(b_envelope)  # b already holds this version
    for device in devices:
        device.disconnect()


def test_a_device_cannot_read_another_devices_topics(parts: Parts) -> None:
    a, b = enrolled(parts, "spy-a"), enrolled(parts, "spy-b")
    assert not a.connect().is_failure
    for topic in ("fleet/v1/devices/spy-b/#", "fleet/v1/devices/+/credentials", "#"):
        a.client.subscribe(topic, qos=1)
    assert not b.connect().is_failure
    b.wait_for(lambda: b.credentials is not None, "credentials")
    parts.server.cli_ok("device", "rotate", "--name", "spy-b", "--now")
    b.wait_for(lambda: b.versions["credentials"] >= 2, "rotated credentials")
    assert all("/spy-b/" not in topic for topic, _ in a.messages)
    a.disconnect()
    b.disconnect()


def _shown_once_acknowledged(parts: Parts, device_id: str) -> dict[str, Any] | None:
    shown: dict[str, Any] = parts.server.cli_ok("device", "show", "--name", device_id).json()
    return shown if shown["pendingDeliveries"] == 0 else None


def test_offline_device_gets_its_credentials_on_connect(parts: Parts) -> None:
    late = enrolled(parts, "sleepy-1")
    parts.server.cli_ok("device", "rotate", "--name", "sleepy-1", "--now")  # while offline
    assert not late.connect().is_failure
    late.wait_for(lambda: late.versions["credentials"] == 2, "the newest credentials")
    # The server's side changes with no message to this device: poll it, not the device.
    shown = wait_until(
        lambda: _shown_once_acknowledged(parts, "sleepy-1"), "the server to record the ack"
    )
    assert shown["lastVersion"] == 2
    late.disconnect()


def test_broker_killed_and_restarted_every_device_ends_with_its_latest(parts: Parts) -> None:
    devices = [enrolled(parts, f"crash-{i}") for i in range(4)]
    for device in devices[:2]:  # a newer version for half of them
        parts.server.cli_ok("device", "rotate", "--name", device.device_id, "--now")
    banned = enrolled(parts, "crash-banned")
    parts.server.cli_ok("device", "disable", "--name", "crash-banned")
    parts.broker.kill()  # SIGKILL: retained messages are lost (mosquitto)
    parts.broker.restart()
    # Login state outlives the crash: dynsec's file, or fleet's database for RabbitMQ.
    assert banned.connect().is_failure
    banned.disconnect()
    for device in devices:
        assert not device.connect().is_failure
    for device, expected in zip(devices, (2, 2, 1, 1), strict=True):
        device.wait_for(
            lambda d=device, v=expected: d.versions["credentials"] == v,
            f"version {expected} after the broker's restart",
            timeout=20,
        )
        device.disconnect()


def test_disable_cuts_registry_and_broker_and_wipes(parts: Parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    push_image(parts, "edge/tool", tmp_path)
    device = enrolled(parts, "gone-1")
    assert not device.connect().is_failure
    device.wait_for(lambda: device.credentials is not None, "credentials")
    creds = device.credentials
    assert creds is not None
    login = f"{creds['username']}:{creds['password']}"
    assert skopeo.copy_from_registry(
        parts.registry.host_port, "edge/tool", "1.0", tmp_path / "before", login
    ).ok
    parts.server.cli_ok("device", "disable", "--name", "gone-1")
    device.wait_for(lambda: device.credentials is None, "the wipe command")
    refused = skopeo.copy_from_registry(
        parts.registry.host_port, "edge/tool", "1.0", tmp_path / "after", login
    )
    assert not refused.ok
    device.disconnect()
    again = WireDevice(
        "gone-1",
        parts.server.url,
        device.x25519,
        device.ed25519,
        enrollment=device.enrollment,
        protocol=parts.mqtt_protocol,
    )
    # The broker login is disabled: at once on mosquitto; on RabbitMQ once the cached
    # "allow" of the login before has expired (its auth cache's TTL).
    refused_by(parts, again, parts.broker.login_refusal_bound_s)
    parts.server.cli_ok("device", "enable", "--name", "gone-1")
    assert not again.connect().is_failure
    again.wait_for(lambda: again.credentials is not None, "fresh credentials")
    fresh = again.credentials
    assert fresh is not None
    assert skopeo.copy_from_registry(
        parts.registry.host_port,
        "edge/tool",
        "1.0",
        tmp_path / "again",
        f"{fresh['username']}:{fresh['password']}",
    ).ok
    again.disconnect()


def refused_by(parts: Parts, device: WireDevice, bound_s: float) -> float:
    """Connect ``device`` until the broker refuses it; fails if that takes over ``bound_s``
    (plus a second of slack, scaled). Returns when the refusal came."""
    start = time.monotonic()
    limit = scaled(bound_s + REFUSAL_SLACK_S)
    while True:
        reason = device.connect()
        if reason is not None and reason.is_failure:
            device.disconnect()
            return time.monotonic() - start
        device.disconnect()
        assert time.monotonic() - start < limit, f"still let in {limit:g} s after the disable"
        time.sleep(RETRY_S)


def test_disable_closes_the_devices_live_connection_within_the_bound(parts: Parts) -> None:
    """A device connected when it is disabled is cut off, and stays off: mosquitto kicks it at
    once; with RabbitMQ fleet closes its connections through the management API at once and
    again after the auth cache's TTL (a reconnect let in by a cached allow meanwhile)."""
    device = enrolled(parts, "cut-1")
    assert not device.connect().is_failure
    device.wait_for(lambda: device.credentials is not None, "credentials")
    started = time.monotonic()
    parts.server.cli_ok("device", "disable", "--name", "cut-1")
    device.wait_for(lambda: device.disconnects >= 1, "the broker closing the connection")
    bound = parts.broker.login_refusal_bound_s + RECLOSE_MARGIN_S + REFUSAL_SLACK_S
    # paho reconnects on its own: the device must be off by the bound and stay off.
    wait_until(lambda: not device.online, "the device off the broker", timeout=bound)
    time.sleep(scaled(bound))
    assert not device.online, "a disabled device is connected again"
    took = time.monotonic() - started
    assert took < scaled(2 * bound + WIPE_WAIT_S + 10)
    device.disconnect()
    print(f"\n{parts.broker_kind}: disabled device off the broker and kept off ({took:.1f} s)")


def test_second_enrollment_of_an_existing_id_is_refused(parts: Parts) -> None:
    enrolled(parts, "unique-1")
    thief = WireDevice("unique-1", parts.server.url, protocol=parts.mqtt_protocol)
    answer = thief.enroll(parts.secret)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "DeviceExists"
