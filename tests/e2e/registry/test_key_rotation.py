"""Signing-key rotation, the operator's way, while a real registry keeps serving pushes.

``fleet keys rotate`` publishes a new key; ``fleet registry auth-config`` writes the bundle the
registry trusts; the registry reads that bundle only when it starts. This test shares the
session's server and registry, so whatever happens it leaves them with a fresh bundle and a
restarted registry.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import requests
import yaml

from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from tests.e2e.stack import ASKS_PER_WORKER_SPREAD, HTTP_TIMEOUT_S, ISSUER, SERVICE, Stack, ok
from tests.support.timing import DEFAULT_POLL_S, scaled

pytestmark = pytest.mark.e2e

REPOSITORY = "rotation/app"
PULL = f"repository:{REPOSITORY}:pull"


def _kid(stack: Stack, creds: str) -> str:
    answer = stack.ask_token(creds, PULL)
    assert answer.status_code == 200, answer.text
    return str(jwt.get_unverified_header(answer.json()["token"])["kid"])


def _kid_after_rotation(stack: Stack, creds: str, old_kid: str, rotated: float) -> str:
    """The new key id, once every worker signs with it; ``rotated`` is the monotonic time just
    after ``fleet keys rotate --publish-delay 0`` returned.

    What the command promises: every worker rechecks the key ring at most
    ``RING_CHECK_INTERVAL_S`` after it last did, so a request *sent* that long after the command
    ended gets the new key from whichever worker answers. Before that the old key is allowed.
    """
    deadline = rotated + scaled(RING_CHECK_INTERVAL_S)
    while True:
        sent = time.monotonic()
        kid = _kid(stack, creds)
        if kid != old_kid:
            break
        assert sent < deadline, (
            f"a token asked {sent - rotated:.2f} s after the rotation is still signed by the "
            f"old key (promised: within {scaled(RING_CHECK_INTERVAL_S):g} s)"
        )
        time.sleep(DEFAULT_POLL_S)
    time.sleep(max(0.0, deadline - time.monotonic()))  # past the bound, on every worker:
    assert {_kid(stack, creds) for _ in range(ASKS_PER_WORKER_SPREAD)} == {kid}
    return kid


def _auth_config(stack: Stack) -> dict[str, str]:
    printed = stack.server.cli_ok("registry", "auth-config", "--realm", stack.server.realm).stdout
    section: dict[str, str] = yaml.safe_load(printed)["auth"]["token"]
    return section


def _tags_with(stack: Stack, token: str) -> int:
    answer = requests.get(
        f"{stack.registry.url}/v2/{REPOSITORY}/tags/list",
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT_S,
    )
    return answer.status_code


def test_pushes_keep_working_across_a_key_rotation(stack: Stack) -> None:
    creds = stack.given_token("RotationToken", REPOSITORY, "content/write", "content/read")
    ok(stack.push(REPOSITORY, creds))
    first_kid = _kid(stack, creds)
    old_jwt = stack.ask_token(creds, PULL).json()["token"]
    try:
        # With a publish delay, the new key is published but the old one still signs: pushes
        # go on before the registry has been given the new bundle.
        stack.server.cli_ok("keys", "rotate", "--publish-delay", "300")
        assert _kid(stack, creds) == first_kid
        ok(stack.push(REPOSITORY, creds, tag="v2"))

        # With --publish-delay 0 the newest key signs on every worker within the ring's
        # recheck interval of the command's end ...
        stack.server.cli_ok("keys", "rotate", "--publish-delay", "0")
        new_kid = _kid_after_rotation(stack, creds, first_kid, time.monotonic())
        jwks = f"{stack.server.url}/.well-known/jwks.json"
        published = requests.get(jwks, timeout=HTTP_TIMEOUT_S).json()
        assert {first_kid, new_kid} <= {key["kid"] for key in published["keys"]}
        # Until it restarts, the registry knows only the bundle it started with.
        stale = stack.push(REPOSITORY, creds, tag="v3")
        assert not stale.ok and "unauthorized: authentication required" in stale.stderr
        # ... so the registry must be given the bundle and restarted, as the command says.
        section = _auth_config(stack)
        assert section == {
            "realm": stack.server.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(stack.server.bundle.resolve()),
        }
        assert Path(section["rootcertbundle"]).read_text().count("BEGIN CERTIFICATE") == 3
        stack.registry.restart()

        ok(stack.push(REPOSITORY, creds, tag="v3"))
        ok(stack.pull(REPOSITORY, creds, tag="v3"))
        assert _kid(stack, creds) == new_kid
        # A JWT signed by the old key before the rotation is still good until it expires.
        assert _tags_with(stack, old_jwt) == 200
    finally:
        _auth_config(stack)
        stack.registry.restart()
