"""The docker backend with the real docker CLI and a fake docker daemon on a unix socket (no
daemon runs here). The fake plays a daemon whose registry accepts one password; the tests assert
what the CLI sent it: the pull of the configured reference and platform, and in
``X-Registry-Auth`` the login that ``docker-credential-fleet`` read from the store (the config
the agent writes names only the helper). After a rotation the CLI sends the new password, with
no ``docker login`` in between, and the old one would be refused."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socketserver
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from device_agent.pull.backend import PullFailed, PullRequest
from device_agent.pull.engine_backend import EngineBackend
from device_agent.pull.images import parse_image
from device_agent.state.credentials import Credentials
from device_agent.state.store import CredentialStore
from tests.support.timing import scaled

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI"),
]

REPO_ROOT = Path(__file__).resolve().parents[3]
LOGIN_SERVER = "127.0.0.1:5999"
REFERENCE = f"{LOGIN_SERVER}/samples/app:v1"
DIGEST = "sha256:" + "5e" * 32
# inspect lists a digest of another registry first: the backend must pick this repository's
FOREIGN_DIGEST = "sha256:" + "0f" * 32
REPO_DIGESTS = [
    f"mirror.example/samples/app@{FOREIGN_DIGEST}",
    f"{LOGIN_SERVER}/samples/app@{DIGEST}",
]
PULL_TIMEOUT_S = 30.0  # unscaled bound the backend is given


@dataclass(frozen=True)
class Call:
    """One API call the docker CLI made: method, path without the API version, query, auth."""

    method: str
    path: str
    query: dict[str, list[str]]
    auth: dict[str, Any] | None


class FakeDaemon:
    """Answers ``_ping``, ``images/create`` (the pull) and ``images/{name}/json`` (inspect);
    records every call. A pull succeeds only with a password in ``accepted``."""

    def __init__(self, socket_path: Path) -> None:
        self.calls: list[Call] = []
        self.accepted: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Api-Version", "1.45")
                self.send_header("OSType", "linux")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _record(self) -> Call:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                parsed = urllib.parse.urlsplit(self.path)
                path = parsed.path
                if path.startswith("/v1."):  # /v1.45/images/create -> /images/create
                    path = "/" + path.split("/", 2)[2]
                header = self.headers.get("X-Registry-Auth")
                auth = None
                if header:
                    padded = header + "=" * (-len(header) % 4)
                    auth = json.loads(base64.urlsafe_b64decode(padded))
                call = Call(self.command, path, urllib.parse.parse_qs(parsed.query), auth)
                outer.calls.append(call)
                return call

            def do_HEAD(self) -> None:
                self._record()
                self._reply(200, b"OK", "text/plain")

            def do_GET(self) -> None:
                call = self._record()
                if call.path == "/_ping":
                    self._reply(200, b"OK", "text/plain")
                elif call.path == f"/images/{REFERENCE}/json":
                    body = {"Id": "sha256:1", "RepoDigests": REPO_DIGESTS}
                    self._reply(200, json.dumps(body).encode())
                else:
                    self._reply(404, b'{"message":"no such image"}')

            def do_POST(self) -> None:
                call = self._record()
                if call.path != "/images/create":
                    self._reply(404, b'{"message":"not here"}')
                elif (call.auth or {}).get("password") not in outer.accepted:
                    self._reply(401, b'{"message":"unauthorized: authentication required"}')
                else:
                    self._reply(200, b'{"status":"Digest: ' + DIGEST.encode() + b'"}\n')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def pulls(self) -> list[Call]:
        return [call for call in self.calls if call.method == "POST"]

    def inspected(self) -> list[str]:
        return [call.path for call in self.calls if call.path.endswith("/json")]

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    socket_path = Path("/tmp") / f"fleet-agent-docker-{os.getpid()}-{id(tmp_path)}.sock"
    helpers = tmp_path / "bin"
    helpers.mkdir()
    wrapper = helpers / "docker-credential-fleet"
    wrapper.write_text(
        f'#!/bin/sh\ncd "{REPO_ROOT}" && exec "{sys.executable}" '
        '-m device_agent.commands.credential_helper "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helpers}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    try:
        with FakeDaemon(socket_path) as running:
            yield running
    finally:
        socket_path.unlink(missing_ok=True)


def credentials(version: int, password: str) -> Credentials:
    return Credentials(
        login_server=LOGIN_SERVER,
        username="dev-docker",
        password=password,
        slot="password1" if version % 2 else "password2",
        expiry=datetime(2027, 1, 1, tzinfo=UTC),
        version=version,
    )


def request(state_dir: Path, current: Credentials) -> PullRequest:
    return PullRequest(
        image=parse_image("samples/app:v1", LOGIN_SERVER),
        credentials=current,
        output=state_dir / "images",
        state_dir=state_dir,
        tls_verify=False,
        platform="linux/arm64",
        timeout_s=scaled(PULL_TIMEOUT_S),
    )


def the_pull(daemon: FakeDaemon) -> Call:
    (pull,) = daemon.pulls()
    return pull


def test_docker_pulls_with_the_helper_and_follows_a_rotation(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    store = CredentialStore(tmp_path)
    store.stage(credentials(1, "docker-first"))
    store.promote()
    backend = EngineBackend("docker")
    daemon.accepted = {"docker-first"}

    assert backend.pull(request(tmp_path, store.current()), threading.Event()) == DIGEST
    pull = the_pull(daemon)
    assert pull.query == {
        "fromImage": [f"{LOGIN_SERVER}/samples/app"],
        "tag": ["v1"],
        "platform": ["linux/arm64"],
    }
    assert pull.auth is not None
    assert pull.auth["username"] == "dev-docker" and pull.auth["password"] == "docker-first"
    assert pull.auth["serveraddress"] == LOGIN_SERVER
    assert daemon.inspected() == [f"/images/{REFERENCE}/json"]
    config = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert config == {"auths": {}, "credHelpers": {LOGIN_SERVER: "fleet"}}

    # the server rotates: the daemon's registry accepts only the new password now
    store.stage(credentials(2, "docker-second"))
    store.promote()
    daemon.accepted = {"docker-second"}
    daemon.calls.clear()
    assert backend.pull(request(tmp_path, store.current()), threading.Event()) == DIGEST
    pull = the_pull(daemon)
    assert pull.auth is not None and pull.auth["password"] == "docker-second"
    assert json.loads((tmp_path / "docker" / "config.json").read_text()) == config


def test_docker_sends_no_login_for_another_registry(daemon: FakeDaemon, tmp_path: Path) -> None:
    """The helper answers only for the device's registry: a store holding a login for another
    server gives docker nothing to send, and the refusal is an auth failure."""
    store = CredentialStore(tmp_path)
    store.stage(Credentials(**{**credentials(1, "elsewhere").__dict__, "login_server": "other:1"}))
    store.promote()
    daemon.accepted = {"elsewhere"}
    with pytest.raises(PullFailed) as refused:
        EngineBackend("docker").pull(request(tmp_path, credentials(1, "x")), threading.Event())
    assert refused.value.auth, refused.value.message
    assert (the_pull(daemon).auth or {}).get("password") in (None, "")


def test_docker_refusals_are_auth_failures(daemon: FakeDaemon, tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(credentials(1, "docker-pw"))
    store.promote()
    daemon.accepted = {"another-password"}  # e.g. the password was retired on the server
    with pytest.raises(PullFailed) as refused:
        EngineBackend("docker").pull(request(tmp_path, store.current()), threading.Event())
    assert refused.value.auth and "docker-pw" not in refused.value.message
    pull = the_pull(daemon)
    assert pull.auth is not None and pull.auth["password"] == "docker-pw"
    assert daemon.inspected() == [], "no inspect after a failed pull"
