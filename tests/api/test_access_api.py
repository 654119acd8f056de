"""``GET /api/v1/access``: the explainer over HTTP, its 400s and 404s, and its document."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import func
from sqlmodel import select

from fleet.api.schemas import AccessOut
from fleet.db.models import AuditEvent
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.api.conftest import Client

ME = "test"


@pytest.fixture
def fleet(services: Services) -> Services:
    services.scope_maps.create(
        "reference-map",
        [
            RepositoryActions("sample/*", ("content/read",)),
            RepositoryActions("sample/teama/*", ("content/write",)),
        ],
        actor=ME,
    )
    services.tokens.create("robot-1", scope_map="reference-map", actor=ME)
    return services


def _get(api: Client, **params: str) -> Any:
    return api("GET", "/access?" + urlencode(params))


def test_a_token_allowed_with_the_rules_behind_it(api: Client, fleet: Services) -> None:
    answer = _get(api, token="robot-1", repository="sample/teama/x", action="content/write")
    assert answer.status_code == 200
    body = answer.get_json()
    AccessOut.model_validate(body)  # the documented shape
    assert body["decision"] == "allowed" and body["allowed"] is True
    assert body["token"]["name"] == "robot-1" and body["token"]["status"] == "enabled"
    assert [(p["name"], p["live"]) for p in body["token"]["passwords"]] == [
        ("password1", True),
        ("password2", True),
    ]
    assert body["scopeMap"] == {"name": "reference-map", "type": "UserDefined"}
    assert body["matchedRules"] == [
        {"repository": "sample/*", "actions": ["content/read"], "grantsAction": False},
        {"repository": "sample/teama/*", "actions": ["content/write"], "grantsAction": True},
    ]
    assert body["grantedActions"] == ["content/read", "content/write"]
    assert body["reasons"] == []


def test_a_disabled_token_and_a_scope_map_alone(api: Client, fleet: Services) -> None:
    fleet.tokens.update("robot-1", status="disabled", actor=ME)
    body = _get(api, token="robot-1", repository="sample/x", action="content/read").get_json()
    assert body["decision"] == "denied"
    assert [r["code"] for r in body["reasons"]] == ["TokenDisabled"]
    assert body["matchedRules"][0]["grantsAction"] is True
    alone = _get(api, scopeMap="reference-map", repository="sample/x", action="content/read")
    body = alone.get_json()
    AccessOut.model_validate(body)
    assert body["decision"] == "allowed" and body["token"] is None


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"repository": "sample/x", "action": "content/read"}, 400, "InvalidRequest"),
        (
            {"token": "robot-1", "scopeMap": "reference-map", "repository": "a", "action": "x"},
            400,
            "InvalidRequest",
        ),
        ({"token": "robot-1", "action": "content/read"}, 400, "InvalidRequest"),
        ({"token": "robot-1", "repository": "sample/x"}, 400, "InvalidRequest"),
        (
            {"token": "robot-1", "repository": "Bad/Name", "action": "content/read"},
            400,
            "InvalidRepositoryName",
        ),
        (
            {"token": "robot-1", "repository": "a" * 5000, "action": "content/read"},
            400,
            "InvalidRepositoryName",
        ),
        ({"token": "robot-1", "repository": "sample/x", "action": "pull"}, 400, "InvalidAction"),
        (
            {"token": "x" * 500, "repository": "sample/x", "action": "content/read"},
            400,
            "InvalidName",
        ),
        (
            {"token": "nobody-here", "repository": "sample/x", "action": "content/read"},
            404,
            "TokenNotFound",
        ),
        (
            {"scopeMap": "no-such-map", "repository": "sample/x", "action": "content/read"},
            404,
            "ScopeMapNotFound",
        ),
    ],
)
def test_bad_input_is_a_clear_error_that_changes_nothing(
    api: Client, fleet: Services, params: dict[str, str], status: int, code: str
) -> None:
    with fleet.ctx.db.session() as s:
        before = s.exec(select(func.count()).select_from(AuditEvent)).one()
    answer = _get(api, **params)
    assert answer.status_code == status
    error = answer.get_json()["error"]
    assert error["code"] == code
    assert len(error["message"]) < 500
    with fleet.ctx.db.session() as s:
        assert s.exec(select(func.count()).select_from(AuditEvent)).one() == before


def test_it_needs_an_api_key(app: Flask, fleet: Services) -> None:
    answer = app.test_client().get("/api/v1/access?token=robot-1&repository=a&action=content/read")
    assert answer.status_code == 401


def test_the_document_states_every_parameter_and_its_bounds(app: Flask) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/access"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params) == {"token", "scopeMap", "repository", "action"}
    assert params["repository"]["required"] and params["action"]["required"]
    assert params["repository"]["schema"]["maxLength"] == 255
    assert params["token"]["schema"]["maxLength"] == 64
    assert params["action"]["schema"]["enum"] == [
        "content/read",
        "content/write",
        "content/delete",
        "metadata/read",
        "metadata/write",
    ]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AccessOut"
    }
    assert "AccessOut" in doc["components"]["schemas"]
