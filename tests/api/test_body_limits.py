"""Request bodies are bounded: 413 in the API's JSON error format, before anything is parsed.

Issue 12, defect 4: a 30 MB JSON body to ``/api/v1/enroll`` (no key) was read and parsed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask

from fleet.api.token_endpoint import MAX_TOKEN_FORM_BYTES
from fleet.app import create_app
from fleet.services import Services
from tests.conftest import make_settings

DEFAULT_LIMIT = 1024 * 1024


def _too_large(response: Any, limit: int) -> None:
    assert response.status_code == 413, response.data[:200]
    error = response.get_json()["error"]
    assert error["code"] == "RequestTooLarge"
    assert f"{limit} bytes" in error["message"]


def test_a_30_mb_enrollment_is_refused_unread(app: Flask) -> None:
    body = json.dumps({"deviceId": "x" * (30 * 1024 * 1024)})
    response = app.test_client().post("/api/v1/enroll", data=body, content_type="application/json")
    _too_large(response, DEFAULT_LIMIT)


def test_a_body_just_over_the_limit_with_a_key_is_413_and_changes_nothing(api) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "MyToken", "description": "x" * DEFAULT_LIMIT}
    response = api.client.post("/api/v1/scope-maps", json=body, headers=api.headers)
    _too_large(response, DEFAULT_LIMIT)
    assert "MyToken" not in [
        m["name"] for m in api("GET", "/scope-maps?limit=1000").get_json()["value"]
    ]


def test_a_body_without_a_length_is_cut_at_the_limit(app: Flask) -> None:
    body = b'{"deviceId": "' + b"x" * (DEFAULT_LIMIT + 10) + b'"}'
    response = app.test_client().post(
        "/api/v1/enroll",
        content_type="application/json",
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,  # the server ends the stream: no Content-Length
            "CONTENT_LENGTH": "",
        },
    )
    _too_large(response, DEFAULT_LIMIT)


def test_the_limit_is_configurable(services: Services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "other", max_request_bytes=2000)
    app = create_app(settings, services)
    response = app.test_client().post("/api/v1/enroll", json={"deviceId": "x" * 3000})
    _too_large(response, 2000)
    small = app.test_client().post("/api/v1/enroll", json={"deviceId": "x"})
    assert small.status_code == 400  # read and refused for what it says, not for its size


@pytest.mark.parametrize("grant", ["password", "refresh_token"])
def test_the_token_endpoint_takes_a_small_form(app: Flask, grant: str) -> None:
    data = {
        "grant_type": grant,
        "username": "x",
        "password": "y",
        "scope": "a" * MAX_TOKEN_FORM_BYTES,
    }
    response = app.test_client().post("/oauth2/token", data=data)
    _too_large(response, MAX_TOKEN_FORM_BYTES)
