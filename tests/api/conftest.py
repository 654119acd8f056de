from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fleet.app import create_app
from fleet.domain.rules import RepositoryActions
from fleet.services import Services


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services.ctx.settings, services)


class Client:
    """A test client that sends the API key and checks every error's shape."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.open(
            f"/api/v1{path}", method=method, json=body, headers=self.headers
        )
        if response.status_code >= 400:
            error = response.get_json()["error"]
            assert set(error) == {"code", "message"} and error["message"]
        return response


@pytest.fixture
def api(app: Flask, services: Services) -> Client:
    _, key = services.api_keys.create("tester", actor="test")
    return Client(app.test_client(), key)


@pytest.fixture
def group(services: Services) -> str:
    """A device group on a read-only map, for the tests that need one."""
    services.scope_maps.create(
        "edge-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="edge-read", actor="t")
    return "pilots"
