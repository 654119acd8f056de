from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from fleet.domain.errors import ValidationError
from fleet.registry_auth.keyring import STATE_FILE, KeyRing
from fleet.registry_auth.tokens import REGISTRY_LEEWAY

START = 1_800_000_000.0
LIFETIME = 300
DELAY = 600
RETENTION = LIFETIME + REGISTRY_LEEWAY


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_ring(path: Path, clock: Clock, delay: float = DELAY) -> KeyRing:
    return KeyRing.open(path, token_lifetime=LIFETIME, publish_delay=delay, clock=clock)


def kids(ring: KeyRing) -> list[str]:
    return [key.kid for key in ring.published_keys()]


def test_opening_an_empty_directory_creates_one_private_key(tmp_path: Path, clock: Clock) -> None:
    ring = open_ring(tmp_path / "keys", clock)
    assert len(ring.entries) == 1
    assert ring.signing_key() == ring.entries[0].key
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / STATE_FILE).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")] == []


def test_reopening_loads_the_same_keys(tmp_path: Path, clock: Clock) -> None:
    ring = open_ring(tmp_path, clock)
    ring.rotate()
    again = open_ring(tmp_path, clock)
    assert again.entries == ring.entries


def test_rotation_publishes_at_once_and_signs_after_the_delay(tmp_path: Path, clock: Clock) -> None:
    ring = open_ring(tmp_path, clock)
    old = ring.signing_key()
    new = ring.rotate()
    assert kids(ring) == [old.kid, new.kid]
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old.kid, new.kid]
    assert ring.signing_key() == old
    clock.advance(DELAY - 1)
    assert ring.signing_key() == old
    clock.advance(1)
    assert ring.signing_key() == new


def test_old_key_stays_until_its_last_token_expired_then_is_pruned(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    old = ring.signing_key()
    new = ring.rotate()
    retiring = ring.entries[0]
    assert retiring.retire_after == START + DELAY + LIFETIME + REGISTRY_LEEWAY
    clock.advance(DELAY + RETENTION - 1)
    assert ring.prune() == []
    assert kids(ring) == [old.kid, new.kid]
    clock.advance(1)
    assert kids(ring) == [new.kid]  # no longer published, even before pruning
    assert ring.prune() == [old.kid]
    assert [e.key.kid for e in open_ring(tmp_path, clock).entries] == [new.kid]


def test_rotating_twice_within_the_delay_keeps_every_key_that_may_sign(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    first = ring.signing_key()
    second = ring.rotate()
    clock.advance(10)
    third = ring.rotate()
    assert kids(ring) == [first.kid, second.kid, third.kid]
    clock.advance(DELAY - 10)
    assert ring.signing_key() == second
    clock.advance(10)
    assert ring.signing_key() == third
    # first signed until second took over; second until third did.
    retire = {e.key.kid: e.retire_after for e in ring.entries}
    assert retire == {
        first.kid: START + DELAY + RETENTION,
        second.kid: START + 10 + DELAY + RETENTION,
        third.kid: None,
    }


def test_rotation_prunes_keys_already_retired(tmp_path: Path, clock: Clock) -> None:
    ring = open_ring(tmp_path, clock, delay=0)
    first = ring.signing_key()
    ring.rotate()
    clock.advance(RETENTION)
    latest = ring.rotate()
    assert first.kid not in [e.key.kid for e in ring.entries]
    assert ring.signing_key() == latest


def test_write_bundle_holds_exactly_the_published_certificates(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path / "keys", clock)
    ring.rotate()
    bundle = tmp_path / "bundle.pem"
    ring.write_bundle(bundle)
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert certificates == [key.certificate for key in ring.published_keys()]
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o644
    assert b"PRIVATE" not in bundle.read_bytes()


def test_refresh_picks_up_another_process_rotation(tmp_path: Path, clock: Clock) -> None:
    signer = open_ring(tmp_path, clock, delay=0)
    operator = open_ring(tmp_path, clock, delay=0)
    assert signer.refresh() is False
    new = operator.rotate()
    assert signer.signing_key() != new
    assert signer.refresh() is True
    assert signer.signing_key() == new


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"token_lifetime": 59}, "InvalidTokenLifetime"),
        ({"publish_delay": -1}, "InvalidDelay"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, clock: Clock, options: dict[str, float], code: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        KeyRing.open(tmp_path, clock=clock, **options)  # type: ignore[arg-type]
    assert caught.value.code == code


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"version": 99, "keys": []}), json.dumps({"version": 1, "keys": []})],
)
def test_an_unreadable_ring_is_reported(tmp_path: Path, clock: Clock, content: str) -> None:
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(ValidationError) as caught:
        open_ring(tmp_path, clock)
    assert caught.value.code == "InvalidKeyRing"
    assert STATE_FILE in caught.value.message


def test_the_newest_ready_key_signs_even_if_an_older_rotation_is_still_pending(
    tmp_path: Path, clock: Clock
) -> None:
    first = open_ring(tmp_path, clock).signing_key()
    pending = open_ring(tmp_path, clock, delay=DELAY).rotate()
    clock.advance(1)
    urgent = open_ring(tmp_path, clock, delay=0).rotate()
    ring = open_ring(tmp_path, clock)
    assert ring.signing_key() == urgent
    assert kids(ring) == [first.kid, pending.kid, urgent.kid]
    clock.advance(DELAY)
    assert ring.signing_key() == urgent
    # pending never signed and has gone; first is kept for as long as its own schedule said.
    assert kids(ring) == [first.kid, urgent.kid]


def test_revoking_the_signing_key_makes_a_fresh_key_sign_at_once(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path / "keys", clock)  # a publish delay of DELAY, ignored by revoke
    old = ring.signing_key()
    ring.rotate()
    clock.advance(DELAY)
    compromised = ring.signing_key()
    fresh = ring.revoke(compromised.kid)
    assert fresh is not None and fresh.kid not in {old.kid, compromised.kid}
    assert ring.signing_key() == fresh
    assert kids(ring) == [old.kid, fresh.kid]  # the retiring key keeps its schedule
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old.kid, fresh.kid]
    bundle = tmp_path / "bundle.pem"
    ring.write_bundle(bundle)
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert certificates == [old.certificate, fresh.certificate]
    assert [e.key.kid for e in open_ring(tmp_path / "keys", clock).entries] == kids(ring)
    assert ring.entries[-1].retire_after is None


def test_revoking_the_only_key_replaces_it(tmp_path: Path, clock: Clock) -> None:
    ring = open_ring(tmp_path, clock)
    only = ring.signing_key()
    fresh = ring.revoke(only.kid)
    assert fresh is not None
    assert kids(ring) == [fresh.kid]
    assert ring.entries[0].signing_from == START
    clock.advance(RETENTION * 10)
    assert ring.signing_key() == fresh and kids(ring) == [fresh.kid]


def test_revoking_a_retiring_key_drops_it_and_leaves_the_signer(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock, delay=0)
    old = ring.signing_key()
    new = ring.rotate()
    before = ring.entries[-1]
    assert ring.revoke(old.kid) is None
    assert kids(ring) == [new.kid]
    assert ring.entries == (before,)


def test_revoking_the_signer_keeps_a_waiting_key_on_its_schedule(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    compromised = ring.signing_key()
    waiting = ring.rotate()  # signs at START + DELAY
    clock.advance(10)
    fresh = ring.revoke(compromised.kid)
    assert fresh is not None
    assert kids(ring) == [fresh.kid, waiting.kid]
    assert ring.signing_key() == fresh
    clock.advance(DELAY - 10)
    assert ring.signing_key() == waiting
    # The fresh key is retired exactly as the revoked one would have been.
    assert ring.entries[0].retire_after == START + DELAY + RETENTION
    clock.advance(RETENTION)
    assert kids(ring) == [waiting.kid]


def test_revoking_a_waiting_key_drops_it_and_the_signer_goes_on(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    signer = ring.signing_key()
    waiting = ring.rotate()
    assert ring.entries[0].retire_after is not None
    assert ring.revoke(waiting.kid) is None
    assert kids(ring) == [signer.kid]
    assert ring.entries[0].retire_after is None  # no successor: it is not retired any more
    clock.advance(DELAY + RETENTION * 10)
    assert ring.signing_key() == signer and kids(ring) == [signer.kid]


def test_revoking_the_first_of_two_waiting_keys_keeps_the_signer_until_the_second(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    signer = ring.signing_key()
    first = ring.rotate()  # signs at START + DELAY
    clock.advance(10)
    second = ring.rotate()  # signs at START + 10 + DELAY
    ring.revoke(first.kid)
    assert kids(ring) == [signer.kid, second.kid]
    clock.advance(DELAY - 1)
    assert ring.signing_key() == signer
    clock.advance(1)
    assert ring.signing_key() == second
    # signer signed until second took over, so it stays published until that + retention.
    assert ring.entries[0].retire_after == START + 10 + DELAY + RETENTION


def test_revoking_an_unknown_key_names_the_known_ones_and_changes_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    ring = open_ring(tmp_path, clock)
    ring.rotate()
    state = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(ValidationError) as caught:
        ring.revoke("NOPE")
    assert caught.value.code == "UnknownKey"
    assert "'NOPE'" in caught.value.message
    assert all(kid in caught.value.message for kid in kids(ring))
    assert (tmp_path / STATE_FILE).read_bytes() == state


def test_refresh_picks_up_another_process_revocation(tmp_path: Path, clock: Clock) -> None:
    signer = open_ring(tmp_path, clock)
    operator = open_ring(tmp_path, clock)
    compromised = signer.signing_key()
    fresh = operator.revoke(compromised.kid)
    assert signer.signing_key() == compromised  # until it rechecks the ring
    assert signer.refresh() is True
    assert signer.signing_key() == fresh
    assert compromised.kid not in kids(signer)
