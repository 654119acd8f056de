"""Issue 12, defect 12: the agent never sends a credential to an origin it was not configured
with, and a redirected answer is never proof of anything.

Before: a token endpoint answering 302 to another port received the device's Basic credentials
there (urllib resends every header), and the other server's 200 counted as "the password
works". Two real local HTTP servers on two ports: the second one must never see a credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from device_agent.commands.enroll import EnrollError, EnrollSecret, enroll
from device_agent.pull.backend import PullFailed
from device_agent.runtime.token_check import Verdict, check_password
from tests.device_agent.agent_http import HttpServer, Reply, Request
from tests.device_agent.pull.test_agent_oci_puller import (
    PASSWORD,
    USER,
    FakeRegistry,
    digest_of,
    layout_blob,
    pull,
)
from tests.device_agent.runtime import test_agent_token_check as token_check_test

CREDENTIALS = replace(token_check_test.CREDENTIALS, username=USER, password=PASSWORD)


class Elsewhere:
    """The other origin: answers 200 to everything, as an attacker's endpoint would."""

    def __call__(self, request: Request) -> Reply:
        if request.path.startswith("/blob/"):
            return Reply(200, self.blobs[request.path.removeprefix("/blob/")])
        return Reply.json(200, {"token": "forged", "expires_in": 300})

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}


@pytest.fixture
def elsewhere() -> Iterator[tuple[Elsewhere, HttpServer]]:
    fake = Elsewhere()
    with HttpServer(fake) as server:
        yield fake, server


def _no_credentials_seen(server: HttpServer) -> None:
    for request in server.requests:
        assert "authorization" not in request.headers, (request.method, request.path)
        assert PASSWORD.encode() not in request.body


def _redirecting_to(target: str, status: int = 302) -> HttpServer:
    return HttpServer(lambda request: Reply(status, b"", {"Location": target + request.path}))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_token_check_is_not_followed_and_proves_nothing(
    elsewhere: tuple[Elsewhere, HttpServer], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    _, other = elsewhere
    with _redirecting_to(other.url, status) as endpoint:
        verdict = check_password(
            CREDENTIALS, token_endpoint=f"{endpoint.url}/oauth2/token", service="fleet-registry"
        )

    assert verdict is Verdict.UNAVAILABLE
    assert other.requests == []
    assert f"redirecting to {other.url}/oauth2/token" in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_enrollment_is_not_redirected_elsewhere(
    elsewhere: tuple[Elsewhere, HttpServer], tmp_path: Path, status: int
) -> None:
    """Not even without the body: the other origin's answer would be taken for the server's."""
    _, other = elsewhere
    state = tmp_path / "state"
    with _redirecting_to(other.url, status) as server, pytest.raises(EnrollError) as refused:
        enroll(
            server.url,
            EnrollSecret(secret="group-secret-123"),
            device_id="dev-redirect",
            state_dir=state,
        )

    assert other.requests == []
    assert f"redirecting to {other.url}/api/v1/enroll" in str(refused.value)
    assert "group-secret-123" not in str(refused.value)
    assert not refused.value.temporary


class RedirectingRegistry(FakeRegistry):
    """Sends its token requests, or its blob downloads, to another origin."""

    def __init__(self, other: HttpServer, *, token: bool = False, blobs: bool = False) -> None:
        super().__init__()
        self.other, self.redirect_token, self.redirect_blobs = other, token, blobs

    def __call__(self, request: Request) -> Reply:
        if self.redirect_token and request.path == "/token":
            return Reply(302, b"", {"Location": f"{self.other.url}/token"})
        if self.redirect_blobs and "/blobs/" in request.path and self._authorized(request):
            digest = request.path.rsplit("/", 1)[1]
            return Reply(307, b"", {"Location": f"{self.other.url}/blob/{digest}"})
        return super().__call__(request)


def test_a_redirected_token_request_fails_and_its_token_is_not_used(
    elsewhere: tuple[Elsewhere, HttpServer], tmp_path: Path
) -> None:
    _, other = elsewhere
    registry = RedirectingRegistry(other, token=True)
    digest, _ = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    with registry.server, pytest.raises(PullFailed) as failed:
        pull(registry, tmp_path)

    assert other.requests == []
    assert f"redirecting to {other.url}/token" in str(failed.value)
    assert not any(
        r.headers.get("authorization") == "Bearer forged" for r in registry.server.requests
    )


@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
def test_blob_downloads_follow_redirects_without_credentials(
    elsewhere: tuple[Elsewhere, HttpServer], tmp_path: Path, scheme: str
) -> None:
    storage, other = elsewhere
    registry = RedirectingRegistry(other, blobs=True)
    registry.scheme = scheme
    digest, layer = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    storage.blobs.update(registry.blobs)
    with registry.server:
        pull(registry, tmp_path)

    assert layout_blob(tmp_path, digest_of(layer)) == layer
    assert other.requests, "the blob downloads were not redirected"
    _no_credentials_seen(other)


class LoopingRegistry(FakeRegistry):
    """Sends every blob download to storage that redirects to itself, signature in the query."""

    def __call__(self, request: Request) -> Reply:
        if "/blobs/" in request.path or request.path.startswith("/loop"):
            target = f"{self.server.url}/loop?X-Amz-Signature=secret-signature"
            return Reply(302, b"", {"Location": target})
        return super().__call__(request)


def test_a_redirect_loop_fails_without_showing_the_signature(tmp_path: Path) -> None:
    registry = LoopingRegistry()
    digest, _ = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    with registry.server, pytest.raises(PullFailed) as failed:
        pull(registry, tmp_path)

    assert "more than 5 redirects" in str(failed.value)
    assert "secret-signature" not in str(failed.value)


class SameOriginRegistry(FakeRegistry):
    """Redirects blob downloads to another path of its own origin, which needs the login."""

    def __call__(self, request: Request) -> Reply:
        prefix = "/v2/samples/app/blobs/"
        if request.path.startswith(prefix):
            return Reply(307, b"", {"Location": "/storage/" + request.path.removeprefix(prefix)})
        if request.path.startswith("/storage/"):
            if not self._authorized(request):
                return Reply.json(401, {})
            return Reply(200, self.blobs[request.path.removeprefix("/storage/")])
        return super().__call__(request)


def test_a_redirect_within_the_registrys_origin_keeps_the_login(tmp_path: Path) -> None:
    registry = SameOriginRegistry()
    digest, layer = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    with registry.server:
        pull(registry, tmp_path)

    assert layout_blob(tmp_path, digest_of(layer)) == layer
    assert any(r.path.startswith("/storage/") for r in registry.server.requests)


class ChallengingStorage:
    """Storage elsewhere that answers a blob with a 401 naming its own realm: a login sent
    there would be a login stolen."""

    def __init__(self) -> None:
        self.server = HttpServer(self)

    def __call__(self, request: Request) -> Reply:
        if request.path == "/token":
            return Reply.json(200, {"token": "forged", "expires_in": 300})
        challenge = f'Bearer realm="{self.server.url}/token",service="storage"'
        return Reply.json(401, {"errors": []}, **{"WWW-Authenticate": challenge})


def test_a_401_from_storage_elsewhere_names_no_realm_for_the_login(tmp_path: Path) -> None:
    """A 401 after a redirect is not the registry refusing its token: no new token is asked
    for, and the realm the storage names never sees the device's login."""
    storage = ChallengingStorage()
    with storage.server:
        registry = RedirectingRegistry(storage.server, blobs=True)
        digest, _ = registry.image("arm64")
        registry.manifests["1"] = registry.manifests[digest]
        with registry.server, pytest.raises(PullFailed) as failed:
            pull(registry, tmp_path)

    assert failed.value.auth
    assert [r.path for r in storage.server.requests if r.path == "/token"] == []
    _no_credentials_seen(storage.server)
    assert registry.issued == ["token-for-dev-x-1"]
