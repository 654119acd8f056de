"""The dashboard through Flask's test client: sign in as a browser would, forms and all."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fleet.app import create_app
from fleet.services import Services
from fleet.services.operators import OperatorService

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(services: Services) -> Flask:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    services.operators = OperatorService(services.ctx, cheap)
    services.operators.create("alice", "admin", PASSWORD, actor="test")
    services.operators.create("victor", "viewer", PASSWORD, actor="test")
    return create_app(services.ctx.settings, services)


@dataclass
class Browser:
    """A test client that reads each page's CSRF token, as a browser submitting its forms."""

    client: FlaskClient

    def get(self, path: str, **kw: object) -> TestResponse:
        return self.client.get(path, **kw)  # type: ignore[arg-type]

    def csrf(self, path: str = "/ui/sign-in") -> str:
        found = CSRF.search(self.get(path).get_data(as_text=True))
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def post(
        self, path: str, data: dict[str, str], *, csrf_from: str | None = None
    ) -> TestResponse:
        form = {"csrf_token": self.csrf(csrf_from or path), **data}
        return self.client.post(path, data=form)

    def sign_in(self, name: str = "alice", password: str = PASSWORD) -> TestResponse:
        return self.post("/ui/sign-in", {"name": name, "password": password})


@pytest.fixture
def browser(app: Flask) -> Browser:
    return Browser(app.test_client())
