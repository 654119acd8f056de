"""The token endpoint feeds credential health; ``GET /api/v1/tokens/{name}`` shows it."""

from __future__ import annotations

import pytest
from flask import Flask

from fleet.app import create_app
from fleet.services import Services
from tests.api.token_endpoint.test_endpoint import basic, get_token

PULL = "repository:sample/x:pull"


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services.ctx.settings, services)


def test_logins_show_up_in_the_token_once_written(app: Flask, services: Services) -> None:
    made = services.tokens.create("MyToken", scope_map="_repositories_pull", actor="t")
    name, password = "MyToken", made.passwords[0].value or ""
    _, key = services.api_keys.create("ops", actor="t")
    api = {"Authorization": f"Bearer {key}"}
    assert get_token(app, basic(name, password), PULL).status_code == 200
    for _ in range(3):
        assert get_token(app, basic(name, "fltp_wrong"), PULL).status_code == 401
    before = app.test_client().get(f"/api/v1/tokens/{name}", headers=api).get_json()
    assert before["health"] == {"lastUsed": None, "failedLogins": 0, "lastFailed": None}
    services.health.flush()  # what the background writer does every few seconds
    health = app.test_client().get(f"/api/v1/tokens/{name}", headers=api).get_json()["health"]
    assert health["failedLogins"] == 3
    assert health["lastUsed"]["address"] == "127.0.0.1" and health["lastUsed"]["at"]
    assert health["lastFailed"]["address"] == "127.0.0.1"
