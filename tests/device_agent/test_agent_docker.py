"""The docker backend with the real docker CLI and a fake docker daemon on a unix socket (no
daemon runs here): the CLI finds ``docker-credential-fleet`` through the ``credHelpers`` of the
config the agent writes, and sends the daemon the store's current login; after a rotation it
sends the new one, with no ``docker login`` in between."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socketserver
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from device_agent.backends import PullFailed, PullRequest
from device_agent.credentials import Credentials
from device_agent.engine_backend import EngineBackend
from device_agent.images import parse_image
from device_agent.store import CredentialStore

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGIN_SERVER = "127.0.0.1:5999"
DIGEST = "sha256:" + "5e" * 32


class FakeDaemon:
    """Answers the three calls ``docker pull`` and ``docker image inspect`` make."""

    def __init__(self, socket_path: Path) -> None:
        self.auths: list[dict[str, Any]] = []
        self.deny = False
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

            def do_HEAD(self) -> None:
                self._reply(200, b"OK", "text/plain")

            def do_GET(self) -> None:
                if self.path.endswith("/_ping"):
                    self._reply(200, b"OK", "text/plain")
                elif "/images/" in self.path and self.path.endswith("/json"):
                    repo = f"{LOGIN_SERVER}/samples/app@{DIGEST}"
                    self._reply(200, json.dumps({"Id": "sha256:1", "RepoDigests": [repo]}).encode())
                else:
                    self._reply(404, b'{"message":"not here"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                header = self.headers.get("X-Registry-Auth", "")
                padded = header + "=" * (-len(header) % 4)
                auth = json.loads(base64.urlsafe_b64decode(padded)) if header else {}
                outer.auths.append(auth)
                if outer.deny:
                    body = b'{"message":"unauthorized: authentication required"}'
                    self._reply(401, body)
                    return
                stream = b'{"status":"Digest: ' + DIGEST.encode() + b'"}\n'
                self._reply(200, stream)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

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
        '-m device_agent.credential_helper "$@"\n'
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
        timeout_s=30,
    )


def test_docker_pulls_with_the_helper_and_follows_a_rotation(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    store = CredentialStore(tmp_path)
    store.stage(credentials(1, "docker-first"))
    store.promote()
    backend = EngineBackend("docker")

    assert backend.pull(request(tmp_path, store.current()), threading.Event()) == DIGEST
    assert daemon.auths[-1]["username"] == "dev-docker"
    assert daemon.auths[-1]["password"] == "docker-first"
    config = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert config["credHelpers"] == {LOGIN_SERVER: "fleet"}
    assert "docker-first" not in json.dumps(config)

    store.stage(credentials(2, "docker-second"))
    store.promote()
    backend.pull(request(tmp_path, store.current()), threading.Event())
    assert daemon.auths[-1]["password"] == "docker-second"


def test_docker_refusals_are_auth_failures(daemon: FakeDaemon, tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(credentials(1, "docker-pw"))
    store.promote()
    daemon.deny = True
    with pytest.raises(PullFailed) as refused:
        EngineBackend("docker").pull(request(tmp_path, store.current()), threading.Event())
    assert refused.value.auth and "docker-pw" not in refused.value.message
