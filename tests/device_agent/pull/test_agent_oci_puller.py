"""The built-in puller against a fake registry, for what the real one in the end-to-end tests
does not show: image indexes and Docker manifest lists (the configured platform, else the
first entry), Docker schema 2 media types, Basic challenges, and content that does not match its
digest (refused, never written under that name)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.pull.backend import PullFailed, PullRequest
from device_agent.pull.images import parse_image
from device_agent.pull.oci_puller import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, BuiltinPuller
from device_agent.state.credentials import Credentials
from tests.device_agent.agent_http import HttpServer, Reply, Request
from tests.support.timing import scaled

USER, PASSWORD = "dev-x", "pw-x"
PULL_TIMEOUT_S = 30.0  # unscaled bound the puller is given; a pull here takes milliseconds


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(data: bytes, media_type: str = "application/octet-stream") -> dict:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


class FakeRegistry:
    """One repository ``samples/app``; Bearer (or Basic) auth; content the test sets up."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.scheme = "Bearer"
        self.corrupt: set[str] = set()
        self.lie_about_digest = False
        self.issued: list[str] = []  # every token the realm gave, oldest first
        self.refused: set[str] = set()  # tokens the registry no longer takes (expired, revoked)
        self.refuse_after_blobs: int | None = None  # then every token issued so far is refused
        self.refuse_every_token = False
        self.blobs_served = 0
        self.server = HttpServer(self)

    def image(self, arch: str, media_type: str = DOCKER_MANIFEST) -> tuple[str, bytes]:
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        layer = f"layer for {arch}".encode()
        self.blobs[digest_of(config)] = config
        self.blobs[digest_of(layer)] = layer
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": blob(config, "application/vnd.docker.container.image.v1+json"),
                "layers": [blob(layer, "application/vnd.docker.image.rootfs.diff.tar.gzip")],
            }
        ).encode()
        self.manifests[digest_of(manifest)] = (media_type, manifest)
        return digest_of(manifest), layer

    def index(self, tag: str, entries: list[tuple[str, str]], media_type: str) -> None:
        manifests = []
        for digest, arch in entries:
            kind, raw = self.manifests[digest]
            manifests.append({**blob(raw, kind), "platform": {"os": "linux", "architecture": arch}})
        raw = json.dumps(
            {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
        ).encode()
        self.manifests[tag] = (media_type, raw)

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if self.scheme == "Basic":
            return request.basic_auth() == (USER, PASSWORD)
        scheme, _, token = header.partition(" ")
        if self.refuse_every_token or token in self.refused:
            return False
        return scheme == "Bearer" and token in self.issued

    def __call__(self, request: Request) -> Reply:
        if request.path == "/token":
            if request.basic_auth() != (USER, PASSWORD):
                return Reply.json(401, {})
            assert request.query["scope"] == ["repository:samples/app:pull"]
            self.issued.append(f"token-for-dev-x-{len(self.issued) + 1}")
            return Reply.json(200, {"token": self.issued[-1], "expires_in": 300})
        if not self._authorized(request):
            realm = f'realm="{self.server.url}/token",service="fake"'
            challenge = f"Bearer {realm}" if self.scheme == "Bearer" else 'Basic realm="fake"'
            return Reply.json(401, {"errors": []}, **{"WWW-Authenticate": challenge})
        if request.path == "/v2/":
            return Reply.json(200, {})
        prefix = "/v2/samples/app/"
        kind, _, reference = request.path.removeprefix(prefix).partition("/")
        if kind == "manifests" and reference in self.manifests:
            media_type, raw = self.manifests[reference]
            claimed = digest_of(b"lie") if self.lie_about_digest else digest_of(raw)
            return Reply(200, raw, {"Content-Type": media_type, "Docker-Content-Digest": claimed})
        if kind == "blobs" and reference in self.blobs:
            self.blobs_served += 1
            if self.blobs_served == self.refuse_after_blobs:
                self.refused |= set(self.issued)
            data = self.blobs[reference]
            return Reply(200, b"X" + data[1:] if reference in self.corrupt else data)
        return Reply.json(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    with fake.server:
        yield fake


def pull(registry: FakeRegistry, tmp_path: Path, image: str = "samples/app:1", **changes) -> str:
    credentials = Credentials(
        login_server=registry.server.host_port,
        username=USER,
        password=changes.pop("password", PASSWORD),
        slot="password1",
        expiry=None,
        version=1,
    )
    request = PullRequest(
        image=parse_image(image, credentials.login_server),
        credentials=credentials,
        output=tmp_path,
        state_dir=tmp_path,
        tls_verify=False,
        platform=changes.pop("platform", "linux/arm64"),
        timeout_s=scaled(PULL_TIMEOUT_S),
    )
    return BuiltinPuller().pull(request, changes.pop("cancel", threading.Event()))


def layout_blob(tmp_path: Path, digest: str) -> bytes:
    return (tmp_path / "samples+app" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
@pytest.mark.parametrize(
    ("platform", "chosen"), [("linux/arm64", "arm64"), ("linux/s390x", "amd64")]
)
def test_an_index_gives_the_configured_platform_else_the_first(
    registry: FakeRegistry, tmp_path: Path, index_type: str, platform: str, chosen: str
) -> None:
    amd64, amd_layer = registry.image("amd64")
    arm64, arm_layer = registry.image("arm64")
    registry.index("1", [(amd64, "amd64"), (arm64, "arm64")], index_type)
    digest = pull(registry, tmp_path, platform=platform)
    assert digest == (arm64 if chosen == "arm64" else amd64)
    index = json.loads((tmp_path / "samples+app" / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == digest and entry["mediaType"] == DOCKER_MANIFEST
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "1"}
    layer = arm_layer if chosen == "arm64" else amd_layer
    assert layout_blob(tmp_path, digest_of(layer)) == layer


def test_pull_by_digest_and_basic_auth(registry: FakeRegistry, tmp_path: Path) -> None:
    registry.scheme = "Basic"
    digest, layer = registry.image("arm64")
    assert pull(registry, tmp_path, image=f"samples/app@{digest}") == digest
    assert layout_blob(tmp_path, digest_of(layer)) == layer


def test_a_blob_that_does_not_match_its_digest_is_refused(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    digest, layer = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    registry.corrupt.add(digest_of(layer))
    with pytest.raises(PullFailed, match="digest check failed"):
        pull(registry, tmp_path)
    blobs = tmp_path / "samples+app" / "blobs" / "sha256"
    assert not (blobs / digest_of(layer).split(":")[1]).exists()
    assert not list(blobs.glob(".*.tmp")), "a temporary blob was left behind"


def test_a_manifest_that_does_not_match_the_registrys_digest_is_refused(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    digest, _ = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    registry.lie_about_digest = True
    with pytest.raises(PullFailed, match="is not the expected"):
        pull(registry, tmp_path)


def test_a_refused_login_is_an_auth_failure(registry: FakeRegistry, tmp_path: Path) -> None:
    registry.image("arm64")
    with pytest.raises(PullFailed) as refused:
        pull(registry, tmp_path, password="wrong")
    assert refused.value.auth


def test_a_second_pull_fetches_only_the_manifest(registry: FakeRegistry, tmp_path: Path) -> None:
    digest, _ = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    pull(registry, tmp_path)
    before = len(registry.server.requests)
    pull(registry, tmp_path)
    fetched = [r.path for r in registry.server.requests[before:] if "/blobs/" in r.path]
    assert fetched == []


def test_a_cancelled_pull_stops(registry: FakeRegistry, tmp_path: Path) -> None:
    registry.image("arm64")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PullFailed, match="cancelled"):
        pull(registry, tmp_path, cancel=cancel)


def test_a_token_refused_mid_pull_is_replaced_once_and_the_pull_goes_on(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    """The registry stops taking the token after the config (its clock passed the JWT's expiry
    before the device's did, or its key was revoked): the next blob's 401 gets a new token."""
    digest, layer = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    registry.refuse_after_blobs = 1
    assert pull(registry, tmp_path) == digest
    assert registry.issued == ["token-for-dev-x-1", "token-for-dev-x-2"]
    assert layout_blob(tmp_path, digest_of(layer)) == layer
    retried = [
        (r.path, r.headers.get("authorization"))
        for r in registry.server.requests
        if "/blobs/" in r.path
    ]
    layer_path = f"/v2/samples/app/blobs/{digest_of(layer)}"
    assert retried[-2:] == [
        (layer_path, "Bearer token-for-dev-x-1"),
        (layer_path, "Bearer token-for-dev-x-2"),
    ]


def test_a_registry_that_refuses_every_token_fails_after_one_retry(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    digest, _ = registry.image("arm64")
    registry.manifests["1"] = registry.manifests[digest]
    registry.refuse_every_token = True
    with pytest.raises(PullFailed, match=r"denied \(401\)") as refused:
        pull(registry, tmp_path)
    assert refused.value.auth
    assert len(registry.issued) == 2  # the first token, and one more after its 401; no loop
