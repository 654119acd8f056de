"""Emergency revocation of a compromised signing key, the operator's way, with a real registry.

``fleet keys revoke --kid K`` drops K from the key ring, the bundle and the JWKS and makes a
fresh key sign at once; the registry, which reads its ``rootcertbundle`` only when it starts,
accepts K's JWTs until it is restarted on the new bundle, and refuses them from then on. This
test shares the session's server and registry, so whatever happens it leaves them with a fresh
bundle and a restarted registry.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import requests
import yaml
from cryptography import x509

from fleet.registry_auth.keys import libtrust_key_id
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from tests.e2e.stack import ASKS_PER_WORKER_SPREAD, HTTP_TIMEOUT_S, SERVICE, Stack, ok
from tests.support.timing import DEFAULT_POLL_S, scaled

pytestmark = pytest.mark.e2e

REPOSITORY = "revocation/app"
PULL = f"repository:{REPOSITORY}:pull"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _login(stack: Stack, creds: str) -> dict[str, str]:
    """A JWT for PULL and a refresh token, as ``docker login`` with ``offline_token`` asks."""
    name, _, password = creds.partition(":")
    answer = requests.get(
        stack.server.realm,
        params={"service": SERVICE, "scope": PULL, "offline_token": "true"},
        auth=(name, password),
        timeout=HTTP_TIMEOUT_S,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    return body


def _refreshed(stack: Stack, refresh_token: str) -> int:
    answer = requests.post(
        stack.server.realm,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "service": SERVICE},
        timeout=HTTP_TIMEOUT_S,
    )
    return answer.status_code


def _registry_get(stack: Stack, token: str, path: str) -> int:
    answer = requests.get(
        f"{stack.registry.url}/v2/{REPOSITORY}/{path}",
        headers={"Authorization": f"Bearer {token}", "Accept": MANIFEST_TYPES},
        timeout=HTTP_TIMEOUT_S,
    )
    return answer.status_code


def _jwks_kids(stack: Stack) -> set[str]:
    published = requests.get(f"{stack.server.url}/.well-known/jwks.json", timeout=HTTP_TIMEOUT_S)
    return {key["kid"] for key in published.json()["keys"]}


def _bundle_kids(bundle: Path) -> set[str]:
    certificates = x509.load_pem_x509_certificates(bundle.read_bytes())
    return {libtrust_key_id(c.public_key()) for c in certificates}  # type: ignore[arg-type]


def _ring(stack: Stack) -> str:
    return str(stack.server.cli_ok("keys", "list").stdout)


def _kid_everywhere_after(stack: Stack, creds: str, old_kid: str, revoked: float) -> str:
    """The key signing in place of ``old_kid`` on every worker; ``revoked`` is the monotonic
    time just after ``fleet keys revoke`` returned. What it promises: a request sent
    ``RING_CHECK_INTERVAL_S`` after that is never signed by the revoked key, whichever worker
    answers; before, the old key is allowed."""
    deadline = revoked + scaled(RING_CHECK_INTERVAL_S)
    while True:
        sent = time.monotonic()
        kid = _kid(_login(stack, creds)["token"])
        if kid != old_kid:
            break
        assert sent < deadline, (
            f"a token asked {sent - revoked:.2f} s after the revocation is still signed by the "
            f"revoked key (promised: within {scaled(RING_CHECK_INTERVAL_S):g} s)"
        )
        time.sleep(DEFAULT_POLL_S)
    time.sleep(max(0.0, deadline - time.monotonic()))  # past the bound, on every worker:
    assert {_kid(_login(stack, creds)["token"]) for _ in range(ASKS_PER_WORKER_SPREAD)} == {kid}
    return kid


def test_a_revoked_key_is_refused_once_the_registry_restarts(stack: Stack) -> None:
    creds = stack.given_token("RevocationToken", REPOSITORY, "content/write", "content/read")
    ok(stack.push(REPOSITORY, creds))
    old = _login(stack, creds)
    compromised = _kid(old["token"])
    assert _kid(old["refresh_token"]) == compromised
    try:
        assert _registry_get(stack, old["token"], "tags/list") == 200
        assert _registry_get(stack, old["token"], "manifests/v1") == 200

        # An unknown key id is refused, names the ring's keys and changes nothing.
        ring_before, bundle_before = _ring(stack), stack.server.bundle.read_bytes()
        unknown = stack.server.cli("keys", "revoke", "--kid", "NOPE")
        assert unknown.returncode != 0
        assert "no key 'NOPE' in the key ring" in unknown.stderr
        assert compromised in unknown.stderr
        assert _ring(stack) == ring_before
        assert stack.server.bundle.read_bytes() == bundle_before

        done = stack.server.cli_ok("keys", "revoke", "--kid", compromised)
        revoked = time.monotonic()
        said = " ".join(done.stderr.split())
        assert (
            f"restart every registry now: until then they still accept JWTs signed by "
            f"{compromised}" in said
        )
        assert compromised not in done.stdout  # the ring as printed
        fresh = _kid_everywhere_after(stack, creds, compromised, revoked)
        assert f"created key {fresh}" in said
        assert compromised not in _jwks_kids(stack) and fresh in _jwks_kids(stack)
        assert _refreshed(stack, old["refresh_token"]) == 401
        # The command wrote the bundle the registry names (fleet init's): K is gone from it.
        assert compromised not in _bundle_kids(stack.server.bundle)
        assert fresh in _bundle_kids(stack.server.bundle)

        # Until it restarts, the registry knows only the bundle it started with.
        new = _login(stack, creds)
        assert _kid(new["token"]) == fresh
        assert _registry_get(stack, old["token"], "tags/list") == 200
        assert _registry_get(stack, new["token"], "tags/list") == 401
        stack.registry.restart()

        assert _registry_get(stack, old["token"], "tags/list") == 401
        assert _registry_get(stack, old["token"], "manifests/v1") == 401
        assert _registry_get(stack, new["token"], "tags/list") == 200
        assert _registry_get(stack, new["token"], "manifests/v1") == 200
        ok(stack.pull(REPOSITORY, creds))  # skopeo's own login, signed by the fresh key
        assert _refreshed(stack, new["refresh_token"]) == 200
        assert compromised not in _jwks_kids(stack)
    finally:
        printed = stack.server.cli_ok("registry", "auth-config", "--realm", stack.server.realm)
        assert yaml.safe_load(printed.stdout)["auth"]["token"]["rootcertbundle"]
        stack.registry.restart()
