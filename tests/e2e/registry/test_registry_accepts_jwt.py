"""A real Distribution 2.8 registry accepts the JWTs that fleet.registry_auth mints.

A tiny token endpoint (the realm) runs in a thread on loopback, built only from
``fleet.registry_auth``: HTTP Basic for one fixed user, scopes parsed, the fixed ``POLICY``
granted, a JWT minted with the key ring's signing key. skopeo drives the registry as a user
would; header and claim variants are sent straight to the registry with ``requests``.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from fleet.domain.actions import ALL_ACTIONS, Action
from fleet.domain.errors import ValidationError
from fleet.registry_auth.grants import access_claim
from fleet.registry_auth.keyring import KeyRing
from fleet.registry_auth.keys import SigningKey, generate_signing_key
from fleet.registry_auth.scopes import parse_scopes
from fleet.registry_auth.tokens import REGISTRY_LEEWAY, mint
from tests.support import skopeo
from tests.support.oci import OciImage, build_oci_image, read_layer_file
from tests.support.ports import LOOPBACK
from tests.support.registry import Registry
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

USER = "MyToken"
PASSWORD = "not-a-real-password-for-tests"
CREDS = f"{USER}:{PASSWORD}"
SERVICE = "fleet-registry"
ISSUER = "fleet"
HELLO = "samples/hello-world"
NGINX = "samples/nginx"
SCRATCH = "samples/scratch"
POLICY: Mapping[str, frozenset[Action]] = {
    HELLO: frozenset({Action.CONTENT_READ, Action.CONTENT_WRITE}),
    NGINX: frozenset({Action.CONTENT_READ}),
    SCRATCH: ALL_ACTIONS,
}
HTTP_TIMEOUT_S = 5.0


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class Realm:
    """The Docker token endpoint the registry's challenge points at."""

    def __init__(self, ring: KeyRing, policy: Mapping[str, frozenset[Action]]) -> None:
        self.ring = ring
        self.policy = policy
        self.scopes_seen: list[list[str]] = []
        self._server: BaseWSGIServer = make_server(
            LOOPBACK, 0, self, request_handler=_QuietHandler, threaded=True
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}/oauth2/token"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        scope_values = request.args.getlist("scope")
        self.scopes_seen.append(scope_values)
        auth = request.authorization
        if (
            auth is None
            or not hmac.compare_digest(auth.username or "", USER)
            or not hmac.compare_digest(auth.password or "", PASSWORD)
        ):
            return _error(401, "UNAUTHORIZED", "invalid credentials")
        if request.args.get("service") != SERVICE:
            return _error(400, "INVALID_REQUEST", "unknown service")
        try:
            scopes = parse_scopes(scope_values)
        except ValidationError as error:
            return _error(400, "INVALID_SCOPE", error.message)
        access = access_claim(scopes, lambda repository: self.policy.get(repository, frozenset()))
        minted = mint(ISSUER, SERVICE, USER, access, self.ring.signing_key())
        body = {
            "token": minted.token,
            "access_token": minted.token,
            "expires_in": minted.expires_in,
            "issued_at": minted.issued_at,
        }
        return Response(json.dumps(body), mimetype="application/json")

    def __enter__(self) -> Realm:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message}]})
    headers = {"WWW-Authenticate": 'Basic realm="fleet"'} if status == 401 else {}
    return Response(body, status=status, headers=headers, mimetype="application/json")


def token_for(
    key: SigningKey,
    access: list[dict[str, object]],
    *,
    headers: dict[str, object] | None = None,
    **claims: object,
) -> str:
    """A JWT built by hand, for the variants ``mint`` would never produce."""
    now = int(time.time())
    payload: dict[str, object] = {
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": f"test-{time.monotonic_ns()}",
        "access": access,
    }
    payload.update(claims)
    header = {"kid": key.kid, "x5c": key.x5c} if headers is None else headers
    return jwt.encode(payload, key.private_key, algorithm="ES256", headers=header)


def pull_access(repository: str) -> list[dict[str, object]]:
    return [{"type": "repository", "name": repository, "actions": ["pull"]}]


def admin_token(ring: KeyRing, repository: str) -> str:
    access = [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
    return mint(ISSUER, SERVICE, "admin", access, ring.signing_key()).token


def get_with_token(registry: Registry, path: str, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(f"{registry.url}{path}", headers=headers, timeout=scaled(HTTP_TIMEOUT_S))


def refused_by_registry(response: requests.Response) -> bool:
    """Distribution's own 401: its error body says UNAUTHORIZED."""
    return bool(
        response.status_code == 401 and response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-auth")


@pytest.fixture(scope="module")
def ring(workdir: Path) -> KeyRing:
    ring = KeyRing.open(workdir / "keys")
    ring.write_bundle(workdir / "bundle.pem")
    return ring


@pytest.fixture(scope="module")
def realm(ring: KeyRing) -> Iterator[Realm]:
    with Realm(ring, POLICY) as realm:
        yield realm


@pytest.fixture(scope="module")
def registry(workdir: Path, realm: Realm) -> Iterator[Registry]:
    with Registry(
        realm=realm.url,
        service=SERVICE,
        issuer=ISSUER,
        rootcertbundle=workdir / "bundle.pem",
        directory=workdir / "registry",
    ) as registry:
        yield registry


@pytest.fixture(scope="module")
def hello_image(workdir: Path, registry: Registry) -> OciImage:
    image = build_oci_image(workdir / "hello", tag="v1")
    result = skopeo.copy_to_registry(image, registry.host_port, HELLO, "v1", CREDS)
    assert result.ok, result.stderr + registry.log_tail()
    return image


def test_push_where_allowed_then_pull_back(
    hello_image: OciImage, registry: Registry, tmp_path: Path
) -> None:
    pulled = skopeo.copy_from_registry(registry.host_port, HELLO, "v1", tmp_path / "out", CREDS)
    assert pulled.ok, pulled.stderr
    assert read_layer_file(tmp_path / "out", hello_image.layer_digest) == hello_image.content
    tags = skopeo.list_tags(registry.host_port, HELLO, CREDS)
    assert tags.ok, tags.stderr
    assert skopeo.tags_of(tags) == ["v1"]


def test_pull_only_repository_can_be_pulled_but_not_pushed(
    registry: Registry, realm: Realm, ring: KeyRing, tmp_path: Path
) -> None:
    seeded = build_oci_image(tmp_path / "seed", tag="v1")
    seeding = skopeo.copy_to_registry(
        seeded, registry.host_port, NGINX, "v1", token=admin_token(ring, NGINX)
    )
    assert seeding.ok, seeding.stderr

    pulled = skopeo.copy_from_registry(registry.host_port, NGINX, "v1", tmp_path / "out", CREDS)
    assert pulled.ok, pulled.stderr

    pushed = skopeo.copy_to_registry(
        build_oci_image(tmp_path / "new", tag="v2"), registry.host_port, NGINX, "v2", CREDS
    )
    assert not pushed.ok
    assert skopeo.DENIED in pushed.stderr
    assert ["repository:samples/nginx:pull,push"] in realm.scopes_seen


def test_wrong_password_is_refused(
    registry: Registry, hello_image: OciImage, tmp_path: Path
) -> None:
    result = skopeo.copy_from_registry(
        registry.host_port, HELLO, "v1", tmp_path / "out", f"{USER}:wrong"
    )
    assert not result.ok
    assert skopeo.INVALID_CREDENTIALS in result.stderr
    anonymous = skopeo.list_tags(registry.host_port, HELLO)
    assert not anonymous.ok
    assert skopeo.INVALID_CREDENTIALS in anonymous.stderr


def test_catalog_is_never_granted(registry: Registry, realm: Realm) -> None:
    challenge = requests.get(f"{registry.url}/v2/_catalog", timeout=scaled(HTTP_TIMEOUT_S))
    assert refused_by_registry(challenge)
    assert 'scope="registry:catalog:*"' in challenge.headers["WWW-Authenticate"]

    answer = requests.get(
        realm.url,
        params={"service": SERVICE, "scope": "registry:catalog:*"},
        auth=(USER, PASSWORD),
        timeout=scaled(HTTP_TIMEOUT_S),
    )
    token = answer.json()["token"]
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    refused = get_with_token(registry, "/v2/_catalog", token)
    assert refused_by_registry(refused)
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]


def test_delete_needs_the_delete_action(
    registry: Registry, hello_image: OciImage, tmp_path: Path
) -> None:
    image = build_oci_image(tmp_path / "scratch", tag="v1")
    assert skopeo.copy_to_registry(image, registry.host_port, SCRATCH, "v1", CREDS).ok
    deleted = skopeo.delete(registry.host_port, SCRATCH, "v1", CREDS)
    assert deleted.ok, deleted.stderr

    refused = skopeo.delete(registry.host_port, HELLO, "v1", CREDS)
    assert not refused.ok
    assert "401 Unauthorized" in refused.stderr
    assert skopeo.tags_of(skopeo.list_tags(registry.host_port, HELLO, CREDS)) == ["v1"]


def _variants(key: SigningKey, stranger: SigningKey) -> dict[str, tuple[str, int]]:
    now = int(time.time())
    access = pull_access(HELLO)
    past_leeway = REGISTRY_LEEWAY + 30
    within_leeway = REGISTRY_LEEWAY - 30
    return {
        "kid and x5c (what mint sends)": (token_for(key, access), 200),
        "kid only": (token_for(key, access, headers={"kid": key.kid}), 200),
        "x5c only": (token_for(key, access, headers={"x5c": key.x5c}), 200),
        "expired, within leeway": (token_for(key, access, exp=now - within_leeway), 200),
        "not yet valid, within leeway": (token_for(key, access, nbf=now + within_leeway), 200),
        "expired past leeway": (token_for(key, access, exp=now - past_leeway), 401),
        "not yet valid past leeway": (token_for(key, access, nbf=now + past_leeway), 401),
        "aud as a list": (token_for(key, access, aud=[SERVICE]), 401),
        "other audience": (token_for(key, access, aud="other-registry"), 401),
        "other issuer": (token_for(key, access, iss="someone-else"), 401),
        "no header key": (token_for(key, access, headers={}), 401),
        "access to another repository": (token_for(key, pull_access(NGINX)), 401),
        "unbundled key": (token_for(stranger, access), 401),
        "unbundled key, kid only": (
            token_for(stranger, access, headers={"kid": stranger.kid}),
            401,
        ),
        "unbundled key naming a bundled kid": (
            token_for(stranger, access, headers={"kid": key.kid}),
            401,
        ),
        # x5c wins over kid: a chain that does not verify is refused whatever the kid says.
        "bundled kid, unbundled x5c": (
            token_for(stranger, access, headers={"kid": key.kid, "x5c": stranger.x5c}),
            401,
        ),
    }


def test_registry_verifies_headers_and_claims_as_documented(
    registry: Registry, ring: KeyRing, hello_image: OciImage
) -> None:
    variants = _variants(ring.signing_key(), generate_signing_key())
    observed = {
        name: get_with_token(registry, f"/v2/{HELLO}/tags/list", token).status_code
        for name, (token, _) in variants.items()
    }
    assert observed == {name: expected for name, (_, expected) in variants.items()}


def test_rotation_keeps_old_and_new_tokens_working_until_the_old_key_is_pruned(
    tmp_path: Path,
) -> None:
    ring = KeyRing.open(tmp_path / "keys", publish_delay=0)
    bundle = tmp_path / "bundle.pem"
    ring.write_bundle(bundle)
    with (
        Realm(ring, POLICY) as realm,
        Registry(
            realm=realm.url,
            service=SERVICE,
            issuer=ISSUER,
            rootcertbundle=bundle,
            directory=tmp_path / "registry",
        ) as registry,
    ):
        image = build_oci_image(tmp_path / "image", tag="v1")
        assert skopeo.copy_to_registry(image, registry.host_port, HELLO, "v1", CREDS).ok
        path = f"/v2/{HELLO}/tags/list"
        old_token = mint(ISSUER, SERVICE, USER, pull_access(HELLO), ring.signing_key()).token

        new_key = ring.rotate()
        new_token = mint(ISSUER, SERVICE, USER, pull_access(HELLO), new_key).token
        ring.write_bundle(bundle)
        # The registry read its bundle at start: the new key is unknown until it restarts.
        assert refused_by_registry(get_with_token(registry, path, new_token))
        registry.restart()
        assert get_with_token(registry, path, old_token).status_code == 200
        assert get_with_token(registry, path, new_token).status_code == 200
        pulled = skopeo.copy_from_registry(registry.host_port, HELLO, "v1", tmp_path / "out", CREDS)
        assert pulled.ok, pulled.stderr

        after_retention = time.time() + ring.retention + 1
        assert ring.prune(after_retention) != []
        ring.write_bundle(bundle, after_retention)
        registry.restart()
        assert refused_by_registry(get_with_token(registry, path, old_token))
        assert get_with_token(registry, path, new_token).status_code == 200
