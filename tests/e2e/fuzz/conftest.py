"""A real ``fleet serve`` on a real mosquitto for schemathesis, with a few named rows in it.

The server is started once for the module, the way a user starts it (tests/e2e/fleet_process.py),
on SQLite by default (``FLEET_FUZZ_DATABASE=postgresql`` for PostgreSQL). Before any generated
request it gets a scope map, a token, a device group with a reusable secret and a one-time code,
and an enrolled device, so that generated paths hit real rows as well as missing ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device_agent.protocol.keys import public_key_b64
from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import POSTGRESQL, SQLITE, server_database_url
from tests.support.timing import scaled

HTTP_TIMEOUT_S = 30.0  # unscaled; a bound on a failure
SCOPE_MAP = "fuzz-read"
TOKEN = "fuzz-token"
GROUP = "fuzz-group"
DEVICES = ("fuzz-device-1", "fuzz-device-2")


@dataclass
class FuzzServer:
    """The running server, its API key, and the names of the rows made before fuzzing."""

    url: str
    api_key: str
    database: str
    names: dict[str, list[str]] = field(default_factory=dict)
    requests_made: int = 0
    seconds_in_requests: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    finished: ClassVar[list[FuzzServer]] = []

    def record(self, status: int, seconds: float) -> None:
        self.requests_made += 1
        self.seconds_in_requests += seconds
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        answer = requests.request(
            method,
            f"{self.url}/api/v1{path}",
            json=body,
            headers=self.headers if auth else {},
            timeout=scaled(HTTP_TIMEOUT_S),
        )
        if answer.status_code >= 300:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None


def _exists(server: FuzzServer, path: str) -> bool:
    answer = requests.get(
        f"{server.url}/api/v1{path}", headers=server.headers, timeout=scaled(HTTP_TIMEOUT_S)
    )
    return answer.status_code == 200


def _enroll(server: FuzzServer, device_id: str, secret: str) -> None:
    server.call(
        "POST",
        "/enroll",
        {
            "deviceId": device_id,
            "enrollmentSecret": secret,
            "x25519PublicKey": public_key_b64(X25519PrivateKey.generate().public_key()),
            "ed25519PublicKey": public_key_b64(Ed25519PrivateKey.generate().public_key()),
        },
        auth=False,
    )


def seed(server: FuzzServer) -> None:
    """Make the named rows that are missing (generated DELETEs remove them): before the run,
    and again before each operation's examples."""
    rule = [{"repository": "edge/*", "actions": ["content/read", "metadata/read"]}]
    if not _exists(server, f"/scope-maps/{SCOPE_MAP}"):
        server.call("POST", "/scope-maps", {"name": SCOPE_MAP, "repositories": rule})
    if not _exists(server, f"/tokens/{TOKEN}"):
        server.call("POST", "/tokens", {"name": TOKEN, "repositories": rule})
    if not _exists(server, f"/groups/{GROUP}"):
        server.call("POST", "/groups", {"name": GROUP, "scopeMap": SCOPE_MAP})
    secret = server.call("POST", f"/groups/{GROUP}/secrets", {})
    code = server.call("POST", f"/groups/{GROUP}/secrets", {"oneTime": True})
    for device_id in DEVICES:
        if not _exists(server, f"/devices/{device_id}"):
            _enroll(server, device_id, secret["value"])
    server.names = {
        "scope_map": [SCOPE_MAP, f"{TOKEN}-scope-map", "_repositories_pull"],
        "token": [TOKEN, f"dev-{DEVICES[0]}"],
        "group": [GROUP],
        "device": list(DEVICES),
        "secret_id": [str(secret["id"]), str(code["id"])],
        "slot": ["password1", "password2"],
    }


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    database = os.environ.get("FLEET_FUZZ_DATABASE", SQLITE)
    if database not in (SQLITE, POSTGRESQL):
        raise ValueError(f"FLEET_FUZZ_DATABASE must be {SQLITE} or {POSTGRESQL}, not {database!r}")
    broker = Mosquitto().start()
    env = {**broker.fleet_env(), "FLEET_SCHEDULER_ENABLED": "false"}
    try:
        with (
            server_database_url(database) as url,
            FleetServer(tmp_path_factory.mktemp("fuzz"), env=env, database_url=url) as fleet,
        ):
            server = FuzzServer(fleet.url, fleet.api_key, database)
            seed(server)
            yield server
            FuzzServer.finished.append(server)
    finally:
        broker.stop()
        broker.cleanup()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many requests the fuzzers sent, how long they took, and what was answered."""
    for server in FuzzServer.finished:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(server.statuses.items()))
        terminalreporter.write_line(
            f"schemathesis: {server.requests_made} requests to fleet serve in "
            f"{server.seconds_in_requests:.1f} s of requests ({server.database}); "
            f"answers {statuses}"
        )
