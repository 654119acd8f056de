"""The real server side for the agent's end-to-end pulls: ``fleet serve`` (started as a user
starts it, on the agent tests' mosquitto) and a Distribution registry whose token realm is that
server's ``/oauth2/token``. Nothing here plays the token endpoint or the registry.

Tests get passwords the way an operator does (tokens through the REST API), rotate them there,
and ask the token endpoint directly when a test must prove which password still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.e2e.fleet_process import FleetServer
from tests.support import skopeo
from tests.support.oci import OciImage, build_oci_image
from tests.support.registry import Registry
from tests.support.timing import scaled

SERVICE = "agent-registry"
ISSUER = "fleet-agent-tests"
DEVICE_GROUP = "agents"
DEVICE_REPOSITORIES = "edge/*"  # what the enrolled devices' group may read
HTTP_TIMEOUT_S = 10.0  # unscaled bound on one answer of the server


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    @property
    def basic(self) -> str:
        return f"{self.username}:{self.password}"


@dataclass
class AgentStack:
    server: FleetServer
    registry: Registry
    enrollment_secret: str
    pusher: Login
    workdir: Path

    @property
    def realm(self) -> str:
        return self.server.realm

    def api(self, method: str, path: str, body: Any = None) -> Any:
        answer = requests.request(
            method,
            f"{self.server.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.server.api_key}"},
            timeout=scaled(HTTP_TIMEOUT_S),
        )
        if answer.status_code >= 300:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def read_token(self, name: str, *repositories: str) -> Login:
        """A token that may read ``repositories``; its password1."""
        rules = [
            {"repository": repository, "actions": ["content/read", "metadata/read"]}
            for repository in repositories
        ]
        made = self.api("POST", "/tokens", {"name": name, "repositories": rules})
        return Login(name, _password(made["credentials"], "password1"))

    def generate_password(self, name: str, slot: str) -> Login:
        made = self.api("POST", f"/tokens/{name}/credentials/generate", {"passwords": [slot]})
        return Login(name, _password(made, slot))

    def delete_password(self, name: str, slot: str) -> None:
        self.api("DELETE", f"/tokens/{name}/credentials/{slot}")

    def slots(self, token: str) -> list[str]:
        shown = self.api("GET", f"/tokens/{token}")
        return sorted(p["name"] for p in shown["credentials"]["passwords"])

    def token_answer(self, login: Login, repository: str) -> int:
        """The status code of ``GET /oauth2/token`` for a pull of ``repository``."""
        answer = requests.get(
            self.realm,
            params={"service": SERVICE, "scope": f"repository:{repository}:pull"},
            auth=(login.username, login.password),
            timeout=scaled(HTTP_TIMEOUT_S),
        )
        return answer.status_code

    def push(self, repository: str, tag: str) -> OciImage:
        """A fresh image (its own digest) pushed with skopeo as the pusher token."""
        image = build_oci_image(self.workdir / f"{repository.replace('/', '+')}-{tag}", tag=tag)
        pushed = skopeo.copy_to_registry(
            image, self.registry.host_port, repository, tag, self.pusher.basic
        )
        if not pushed.ok:
            raise AssertionError(pushed.stderr + self.registry.log_tail())
        return image


def _password(credentials: dict[str, Any], slot: str) -> str:
    (value,) = [p["value"] for p in credentials["passwords"] if p["name"] == slot]
    return str(value)
