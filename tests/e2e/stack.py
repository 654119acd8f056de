"""What a user does to the real parts: the fleet CLI, skopeo, and the token endpoint itself.

A :class:`Stack` is one ``fleet serve`` process and the Distribution registry that trusts it. The
``ok``/``denied``/``unauthorized``/``delete_refused`` checks assert on what a user sees.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests

from tests.e2e.fleet_process import FleetServer
from tests.support import skopeo
from tests.support.oci import OciImage, build_oci_image
from tests.support.registry import Registry
from tests.support.skopeo import DENIED, INVALID_CREDENTIALS, SkopeoResult
from tests.support.timing import scaled

SERVICE = "e2e-registry"
ISSUER = "fleet-e2e"
SERVER_ENV = {"FLEET_REGISTRY_SERVICE": SERVICE, "FLEET_TOKEN_ISSUER": ISSUER}
HTTP_TIMEOUT_S = scaled(10.0)  # one HTTP request; a bound on a failure
# Requests on fresh connections spread over the two workers; with 12, the chance that one
# worker sees none of them is 2 * 0.5**12, about 0.05%.
ASKS_PER_WORKER_SPREAD = 12


@dataclass
class Stack:
    """A fleet server and the registry that trusts it, with what a user does to them."""

    server: FleetServer
    registry: Registry
    workdir: Path

    def __post_init__(self) -> None:
        self._images = itertools.count(1)

    # --- the operator's side: the fleet CLI ------------------------------------------------

    def fleet(self, *args: str) -> Any:
        """``fleet ARGS --output json`` as a subprocess; its JSON answer (None if empty)."""
        result = self.server.cli_ok(*args)
        return result.json() if result.stdout.strip() else None

    def create_token(self, name: str, *repository_rules: list[str], **options: str) -> str:
        """``fleet token create`` with ``--repository`` rules or ``scope_map=...``; "name:pw1"."""
        args = ["token", "create", "--name", name, "--registry", "myregistry"]
        for rule in repository_rules:
            args += ["--repository", *rule]
        for option, value in options.items():
            args += [f"--{option.replace('_', '-')}", value]
        made = self.fleet(*args)
        return f"{name}:{made['credentials']['passwords'][0]['value']}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The REST API, for setup steps that are not the step under test (no CLI start-up)."""
        answer = requests.request(
            method,
            f"{self.server.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.server.api_key}"},
            timeout=HTTP_TIMEOUT_S,
        )
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def given_token(self, name: str, repository: str, *actions: str) -> str:
        """A token made through the REST API, for tests whose subject comes after creation."""
        rules = [{"repository": repository, "actions": list(actions)}]
        made = self.api("POST", "/tokens", {"name": name, "repositories": rules})
        return f"{name}:{made['credentials']['passwords'][0]['value']}"

    # --- the registry user's side: skopeo -------------------------------------------------

    def image(self, tag: str = "v1") -> OciImage:
        return build_oci_image(self.workdir / "images" / f"image-{next(self._images)}", tag=tag)

    def push(self, repository: str, creds: str, tag: str = "v1") -> skopeo.SkopeoResult:
        image = self.image(tag)
        return skopeo.copy_to_registry(image, self.registry.host_port, repository, tag, creds)

    def pull(self, repository: str, creds: str, tag: str = "v1") -> skopeo.SkopeoResult:
        target = self.workdir / "pulled" / f"pull-{next(self._images)}"
        target.mkdir(parents=True)
        return skopeo.copy_from_registry(self.registry.host_port, repository, tag, target, creds)

    def list_tags(self, repository: str, creds: str) -> skopeo.SkopeoResult:
        return skopeo.list_tags(self.registry.host_port, repository, creds)

    def delete(self, repository: str, creds: str, tag: str = "v1") -> skopeo.SkopeoResult:
        return skopeo.delete(self.registry.host_port, repository, tag, creds)

    # --- the token endpoint, asked directly ------------------------------------------------

    def ask_token(self, creds: str, *scopes: str) -> requests.Response:
        """GET /oauth2/token as a registry client does after a 401 challenge."""
        name, _, password = creds.partition(":")
        return requests.get(
            self.server.realm,
            params={"service": SERVICE, "scope": list(scopes)},
            auth=(name, password),
            timeout=HTTP_TIMEOUT_S,
        )

    def granted(self, creds: str, *scopes: str) -> dict[str, list[str]]:
        """The ``access`` claim of the JWT issued for ``scopes``, as ``{name: actions}``."""
        answer = self.ask_token(creds, *scopes)
        assert answer.status_code == 200, answer.text
        claims = decode(answer.json()["token"])
        return {entry["name"]: entry["actions"] for entry in claims["access"]}


def registry_for(server: FleetServer, directory: Path) -> Registry:
    """A registry that takes ``server``'s JWTs (its realm, service, issuer and bundle)."""
    return Registry(
        realm=server.realm,
        service=SERVICE,
        issuer=ISSUER,
        rootcertbundle=server.bundle,
        directory=directory,
    )


def decode(token: str) -> dict[str, Any]:
    """A JWT's claims; the registry, not the test, checks the signature."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def creds_with(creds: str, password: str) -> str:
    return f"{creds.partition(':')[0]}:{password}"


def ok(result: SkopeoResult) -> None:
    assert result.ok, result.output


def denied(result: SkopeoResult) -> None:
    """The registry refused the token's access, as the reference's docker push does."""
    assert not result.ok, result.output
    assert DENIED in result.stderr, result.output


def unauthorized(result: SkopeoResult) -> None:
    """The token endpoint refused the name and password (401)."""
    assert not result.ok, result.output
    assert INVALID_CREDENTIALS in result.stderr, result.output


def delete_refused(result: SkopeoResult) -> None:
    """The registry refused a manifest delete: the JWT carried no ``delete``."""
    assert not result.ok, result.output
    assert "(401 Unauthorized)" in result.stderr, result.output
    assert '"Action":"delete"' in result.stderr.replace("\\", ""), result.output
