"""The envelope handling logic, apart from MQTT: accept newer credentials only once their
password works, refuse forged, replayed, other-device and misdirected envelopes without touching
what is stored, obey wipe and pull, and report each outcome as the protocol says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.protocol.envelope import Kind
from device_agent.runtime.handler import MAX_REJECTS_PER_WINDOW, REJECT_WINDOW_S, EnvelopeHandler
from device_agent.runtime.token_check import Verdict
from device_agent.state.credentials import Credentials
from device_agent.state.keys import load_or_create_device_keys
from device_agent.state.store import CredentialStore, StoreState
from tests.device_agent.agent_support import FakeServer

DEVICE = "rpi-0001"


class Checks:
    """The token endpoint, scripted: answers ``verdict`` and remembers what it was asked."""

    def __init__(self) -> None:
        self.verdict = Verdict.WORKS
        self.asked: list[str] = []

    def __call__(self, credentials: Credentials) -> Verdict:
        self.asked.append(credentials.password)
        return self.verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(
    tmp_path: Path, checks: Checks, clock: Clock
) -> Callable[[], tuple[EnvelopeHandler, FakeServer]]:
    def build() -> tuple[EnvelopeHandler, FakeServer]:
        keys = load_or_create_device_keys(tmp_path)
        server = FakeServer(DEVICE, keys)
        handler = EnvelopeHandler(
            device_id=DEVICE,
            device_key=keys.x25519,
            server_key=server.signing_key.public_key(),
            store=CredentialStore(tmp_path),
            check_password=checks,
            clock=clock,
        )
        return handler, server

    return build


def test_newer_credentials_are_checked_promoted_and_acked(make, checks: Checks) -> None:
    handler, server = make()
    outcome = handler.handle(Kind.CREDENTIALS, server.credentials("pw-1"))
    assert outcome.statuses == [
        {"type": "ack", "kind": "credentials", "version": 1, "slot": "password1"}
    ]
    assert outcome.credentials_changed
    assert checks.asked == ["pw-1"]
    current = handler.store.current()
    assert current is not None and current.password == "pw-1" and current.version == 1

    rotated = handler.handle(Kind.CREDENTIALS, server.credentials("pw-2", slot="password2"))
    assert rotated.statuses[0]["slot"] == "password2"
    assert handler.store.current().password == "pw-2"  # type: ignore[union-attr]
    assert handler.store.previous().password == "pw-1"  # type: ignore[union-attr]
    assert handler.hello()["versions"] == {"credentials": 2, "command": 0}


def test_a_forged_envelope_never_replaces_credentials(make, checks: Checks) -> None:
    handler, server = make()
    handler.handle(Kind.CREDENTIALS, server.credentials("good"))
    before = handler.store.state
    forged = server.credentials("evil", signing_key=Ed25519PrivateKey.generate())
    outcome = handler.handle(Kind.CREDENTIALS, forged)
    assert outcome.statuses == [
        {"type": "reject", "kind": "credentials", "version": 2, "reason": "BadSignature"}
    ]
    assert handler.store.state == before
    assert checks.asked == ["good"]
    assert handler.refusals == {"BadSignature": 1}


def test_a_tampered_envelope_is_refused(make) -> None:
    handler, server = make()
    sealed = bytearray(server.credentials("pw"))
    sealed[-70] ^= 1
    outcome = handler.handle(Kind.CREDENTIALS, bytes(sealed))
    assert outcome.statuses[0]["reason"] == "BadSignature"
    assert handler.store.state == StoreState()


def test_a_replayed_older_envelope_is_refused(make) -> None:
    handler, server = make()
    old = server.credentials("old")
    handler.handle(Kind.CREDENTIALS, old)
    handler.handle(Kind.CREDENTIALS, server.credentials("new"))
    outcome = handler.handle(Kind.CREDENTIALS, old)
    assert outcome.statuses == [
        {"type": "reject", "kind": "credentials", "version": 1, "reason": "StaleVersion"}
    ]
    assert handler.store.current().password == "new"  # type: ignore[union-attr]


def test_the_retained_copy_of_what_is_held_is_acknowledged_again(make, checks: Checks) -> None:
    """Not refused, not checked again: acknowledged again, in case the first ack was lost."""
    handler, server = make()
    sealed = server.credentials("pw")
    first = handler.handle(Kind.CREDENTIALS, sealed)
    again = handler.handle(Kind.CREDENTIALS, sealed)
    assert again.statuses == first.statuses and again.statuses[0]["type"] == "ack"
    assert not again.credentials_changed
    assert handler.duplicates == 1 and not handler.refusals
    assert checks.asked == ["pw"]


def test_another_devices_envelope_is_refused(make, tmp_path: Path) -> None:
    handler, server = make()
    other = server.credentials("theirs", device_id="rpi-0002")
    outcome = handler.handle(Kind.CREDENTIALS, other)
    assert outcome.statuses[0]["reason"] == "WrongDevice"
    assert handler.store.state == StoreState()


def test_an_envelope_sealed_to_another_key_is_refused(make, tmp_path: Path) -> None:
    handler, server = make()
    stranger = FakeServer(DEVICE, load_or_create_device_keys(tmp_path / "other"))
    stranger.signing_key = server.signing_key
    outcome = handler.handle(Kind.CREDENTIALS, stranger.credentials("not for you"))
    assert outcome.statuses[0]["reason"] == "DecryptFailed"
    assert handler.store.state == StoreState()


@pytest.mark.parametrize("garbage", [b"x", b"FLEV" + b"\x01" * 20, b"\x00" * 200])
def test_garbage_is_refused_as_malformed(make, garbage: bytes) -> None:
    handler, _ = make()
    outcome = handler.handle(Kind.CREDENTIALS, garbage)
    assert outcome.statuses[0]["reason"] == "Malformed"


def test_an_emptied_retained_message_is_ignored(make) -> None:
    handler, _ = make()
    assert handler.handle(Kind.CREDENTIALS, b"").statuses == []
    assert not handler.refusals


def test_a_command_on_the_credentials_topic_is_refused(make) -> None:
    handler, server = make()
    outcome = handler.handle(Kind.CREDENTIALS, server.command("wipe"))
    assert outcome.statuses[0]["reason"] == "WrongKind"


def test_a_refused_password_is_discarded_and_rejected(make, checks: Checks) -> None:
    handler, server = make()
    handler.handle(Kind.CREDENTIALS, server.credentials("works"))
    checks.verdict = Verdict.REFUSED
    outcome = handler.handle(Kind.CREDENTIALS, server.credentials("broken", slot="password2"))
    assert outcome.statuses == [
        {"type": "reject", "kind": "credentials", "version": 2, "reason": "CredentialsRefused"}
    ]
    assert handler.store.current().password == "works"  # type: ignore[union-attr]
    assert handler.store.staged() is None
    assert handler.hello()["versions"]["credentials"] == 1


def test_an_unanswered_check_keeps_the_password_staged_until_it_works(make, checks) -> None:
    handler, server = make()
    checks.verdict = Verdict.UNAVAILABLE
    outcome = handler.handle(Kind.CREDENTIALS, server.credentials("pw"))
    assert outcome.check_pending and outcome.statuses == []
    assert handler.store.staged() is not None and handler.store.current() is None
    assert handler.hello()["versions"]["credentials"] == 0  # staged is not acknowledged

    assert handler.retry_staged().check_pending
    checks.verdict = Verdict.WORKS
    retried = handler.retry_staged()
    assert retried.statuses[0]["type"] == "ack" and retried.credentials_changed
    assert handler.store.current().password == "pw"  # type: ignore[union-attr]
    assert handler.retry_staged().statuses == []


def test_invalid_credentials_payload_is_refused(make) -> None:
    handler, server = make()
    sealed = server.seal({"login_server": "x", "username": "u"}, Kind.CREDENTIALS)
    outcome = handler.handle(Kind.CREDENTIALS, sealed)
    assert outcome.statuses[0]["reason"] == "InvalidPayload"
    assert handler.store.last_version("credentials") == 1


def test_wipe_forgets_older_credentials_and_acks(make) -> None:
    handler, server = make()
    handler.handle(Kind.CREDENTIALS, server.credentials("pw"))
    outcome = handler.handle(Kind.COMMAND, server.command("wipe"))
    assert outcome.statuses == [{"type": "ack", "kind": "command", "version": 2}]
    assert outcome.credentials_changed
    assert handler.store.current() is None and handler.store.previous() is None
    assert handler.hello()["versions"] == {"credentials": 0, "command": 2}
    # the retained wipe arrives again on reconnect: acknowledged again, nothing else happens
    again = handler.handle(Kind.COMMAND, server.command("wipe", version=2))
    assert again.statuses == [{"type": "ack", "kind": "command", "version": 2}]
    assert not again.credentials_changed


def test_a_wipe_older_than_the_credentials_keeps_them(make) -> None:
    """Disable (wipe v1), enable, new credentials (v2); the wipe arrives late: it must not
    forget credentials the server sent after it."""
    handler, server = make()
    wipe = server.command("wipe")
    handler.handle(Kind.CREDENTIALS, server.credentials("after the wipe"))
    outcome = handler.handle(Kind.COMMAND, wipe)
    assert outcome.statuses[0]["type"] == "ack"
    assert handler.store.current().password == "after the wipe"  # type: ignore[union-attr]


def test_pull_command_asks_for_pulls(make) -> None:
    handler, server = make()
    outcome = handler.handle(Kind.COMMAND, server.command("pull", images=["samples/app:1.0"]))
    assert outcome.pull == ("samples/app:1.0",)
    assert outcome.statuses == [{"type": "ack", "kind": "command", "version": 1}]
    configured = handler.handle(Kind.COMMAND, server.command("pull", images=[]))
    assert configured.pull == ()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"command": "reboot"}, "UnknownCommand"),
        ({"command": "pull", "images": "samples/app"}, "InvalidPayload"),
        ({"command": "pull", "images": [1]}, "InvalidPayload"),
    ],
)
def test_bad_commands_are_refused_but_recorded(make, payload: dict, reason: str) -> None:
    handler, server = make()
    outcome = handler.handle(Kind.COMMAND, server.seal(payload, Kind.COMMAND))
    assert outcome.statuses[0]["reason"] == reason and outcome.pull is None
    assert handler.store.last_version("command") == 1


def test_rejects_are_reported_at_a_bounded_rate(make, clock: Clock) -> None:
    handler, server = make()
    forged_key = Ed25519PrivateKey.generate()
    reported = 0
    for _ in range(MAX_REJECTS_PER_WINDOW + 5):
        outcome = handler.handle(Kind.CREDENTIALS, server.credentials("x", signing_key=forged_key))
        reported += len(outcome.statuses)
    assert reported == MAX_REJECTS_PER_WINDOW
    assert handler.refusals["BadSignature"] == MAX_REJECTS_PER_WINDOW + 5
    clock.now += REJECT_WINDOW_S
    assert handler.handle(
        Kind.CREDENTIALS, server.credentials("x", signing_key=forged_key)
    ).statuses


def test_state_survives_a_restart(make, tmp_path: Path) -> None:
    handler, server = make()
    handler.handle(Kind.CREDENTIALS, server.credentials("pw"))
    reopened = CredentialStore(tmp_path)
    assert reopened.current().password == "pw"  # type: ignore[union-attr]
    assert reopened.last_version("credentials") == 1
