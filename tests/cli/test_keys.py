"""``fleet keys rotate`` says when the new key signs everywhere, and a server keeps that promise.

A :class:`SigningService` opened on the same data directory stands for one worker of a server
sharing the key ring: it signs before the rotation (so it has just rechecked the ring, the worst
case), and from ``RING_CHECK_INTERVAL_S`` after the command ended it must sign with the new key.
The keys live on disk only, so these tests need no database of either kind.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt
from click.testing import CliRunner

from fleet.cli import cli
from fleet.config import load_settings
from fleet.registry_auth.keyring import KeyRing
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services.signing import SigningService
from tests.support.timing import DEFAULT_POLL_S

PROMISE = re.compile(r"key (\S+) signs on every server sharing this key ring from (\S+) \((.+?)\)")


@dataclass(frozen=True)
class Rotated:
    kid: str
    everywhere_from: datetime
    message: str


def _env(data_dir: Path) -> dict[str, str | None]:
    """Only this test's data directory: a developer's FLEET_* variables are unset."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLEET_")}
    return {**unset, "FLEET_DATA_DIR": str(data_dir)}


def _initialised(tmp_path: Path) -> dict[str, str | None]:
    env = _env(tmp_path / "data")
    done = CliRunner().invoke(cli, ["init"], env=env)
    assert done.exit_code == 0, done.output
    return env


def _rotate(env: dict[str, str | None], delay: int) -> Rotated:
    done = CliRunner().invoke(cli, ["keys", "rotate", "--publish-delay", str(delay)], env=env)
    assert done.exit_code == 0, done.output
    promise = PROMISE.search(done.stderr)
    assert promise is not None, done.stderr
    return Rotated(promise[1], datetime.fromisoformat(promise[2]), done.stderr)


def _signer(env: dict[str, str | None]) -> SigningService:
    return SigningService.open(load_settings(environ={k: v for k, v in env.items() if v}))


def _kid(signer: SigningService) -> str:
    token = signer.registry_token("someone", []).token
    return str(jwt.get_unverified_header(token)["kid"])


def test_the_help_states_what_no_delay_promises() -> None:
    shown = CliRunner().invoke(cli, ["keys", "rotate", "--help"])
    assert shown.exit_code == 0
    words = " ".join(shown.output.split())
    assert f"rechecks it every {RING_CHECK_INTERVAL_S:g} s" in words
    assert f"with --publish-delay 0, within {RING_CHECK_INTERVAL_S:g} s" in words


def test_with_no_delay_a_server_that_just_signed_switches_within_the_interval(
    tmp_path: Path,
) -> None:
    env = _initialised(tmp_path)
    signer = _signer(env)
    old = _kid(signer)  # this worker has just rechecked the ring: the longest wait is ahead

    rotated = _rotate(env, 0)
    ended = time.monotonic()
    assert rotated.kid != old
    assert f"within {RING_CHECK_INTERVAL_S:g} s" in rotated.message
    assert "restart them now" in rotated.message
    # Both clocks are this process's, and the bound is elapsed time, not work done: it holds
    # exactly on any machine, so it is not scaled.
    while time.monotonic() < ended + RING_CHECK_INTERVAL_S:
        assert _kid(signer) in {old, rotated.kid}
        time.sleep(DEFAULT_POLL_S)
    assert _kid(signer) == rotated.kid
    assert time.time() >= rotated.everywhere_from.timestamp()


def test_with_a_delay_the_new_key_signs_from_the_time_printed(tmp_path: Path) -> None:
    env = _initialised(tmp_path)
    old = _kid(_signer(env))

    rotated = _rotate(env, 300)
    assert "(in 300 s)" in rotated.message
    assert "restart them within 300 s" in rotated.message
    assert _kid(_signer(env)) == old  # a server that reads the ring now: published, not signing
    ring = KeyRing.open(tmp_path / "data" / "signing-keys")
    assert rotated.kid in {key.kid for key in ring.published_keys()}
    printed = rotated.everywhere_from.timestamp()  # to the millisecond, rounded down
    assert ring.signing_key(now=printed - 1).kid == old
    assert ring.signing_key(now=printed + 0.001).kid == rotated.kid
