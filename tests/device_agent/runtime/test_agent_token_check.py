"""A new password is trusted only when the token endpoint answers 200 to it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from device_agent.runtime.token_check import Verdict, check_password, check_url
from device_agent.state.credentials import Credentials
from tests.device_agent.agent_http import HttpServer, Reply, Request
from tests.support.ports import free_port

USER, PASSWORD = "dev-rpi-0001", "fltp_new-password"
CREDENTIALS = Credentials(
    login_server="registry.example:5000",
    username=USER,
    password=PASSWORD,
    slot="password2",
    expiry=datetime(2027, 1, 1, tzinfo=UTC),
    version=3,
)


class TokenEndpoint:
    def __init__(self) -> None:
        self.status = 200

    def __call__(self, request: Request) -> Reply:
        if request.basic_auth() != (USER, PASSWORD) and self.status == 200:
            return Reply.json(401, {"errors": []})
        return Reply.json(self.status, {"token": "jwt"} if self.status == 200 else {})


@pytest.fixture
def endpoint() -> Iterator[tuple[TokenEndpoint, HttpServer]]:
    fake = TokenEndpoint()
    with HttpServer(fake) as server:
        yield fake, server


def check(server: HttpServer, credentials: Credentials = CREDENTIALS) -> Verdict:
    return check_password(
        credentials, token_endpoint=f"{server.url}/oauth2/token", service="fleet-registry"
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.WORKS),
        (401, Verdict.REFUSED),
        (403, Verdict.REFUSED),
        (429, Verdict.UNAVAILABLE),
        (500, Verdict.UNAVAILABLE),
        (503, Verdict.UNAVAILABLE),
    ],
)
def test_verdicts(endpoint, status: int, verdict: Verdict) -> None:
    fake, server = endpoint
    fake.status = status
    assert check(server) is verdict
    asked = server.requests[-1]
    assert asked.method == "GET" and asked.path == "/oauth2/token"
    assert asked.query == {"service": ["fleet-registry"]}  # no scope: the login alone
    assert asked.basic_auth() == (USER, PASSWORD)


def test_a_wrong_password_is_refused(endpoint) -> None:
    _, server = endpoint
    wrong = Credentials(**{**CREDENTIALS.__dict__, "password": "nope"})
    assert check(server, wrong) is Verdict.REFUSED


def test_an_unreachable_endpoint_is_unavailable() -> None:
    verdict = check_password(
        CREDENTIALS,
        token_endpoint=f"http://127.0.0.1:{free_port()}/oauth2/token",
        service="fleet-registry",
    )
    assert verdict is Verdict.UNAVAILABLE


def test_check_url_keeps_an_existing_query() -> None:
    assert check_url("https://f.example/t?x=1", "s v") == "https://f.example/t?x=1&service=s+v"
