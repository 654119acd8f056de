"""The token endpoint bounds what it reads: the number of scopes, their length, the JWT it mints,
and it checks the password before it parses the scopes (issue 12, defect 4)."""

from __future__ import annotations

import pytest
from flask import Flask

from fleet.api.token_endpoint import MAX_SCOPES
from fleet.app import create_app
from fleet.registry_auth.tokens import MAX_TOKEN_BYTES
from fleet.services import Services
from tests.api.token_endpoint.test_endpoint import SERVICE, basic, get_token, refused_as


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services.ctx.settings, services)


@pytest.fixture
def admin(services: Services) -> tuple[str, str]:
    made = services.tokens.create("AdminTok", scope_map="_repositories_admin", actor="t")
    return "AdminTok", made.passwords[0].value or ""


def _post(app: Flask, name: str, password: str, scopes: list[str]):  # type: ignore[no-untyped-def]
    return app.test_client().post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": name,
            "password": password,
            "service": SERVICE,
            "scope": " ".join(scopes),
        },
    )


def _scopes(count: int) -> list[str]:
    return [f"repository:s/r{i}:pull" for i in range(count)]


def test_too_many_scopes_is_400_before_the_password_is_checked(
    app: Flask, admin: tuple[str, str]
) -> None:
    for response in (
        _post(app, admin[0], "wrong", _scopes(MAX_SCOPES + 1)),
        _post(app, *admin, _scopes(MAX_SCOPES + 1)),
        get_token(app, basic(*admin), *_scopes(MAX_SCOPES + 1)),
    ):
        assert refused_as(response, 400, "INVALID_REQUEST"), response.get_json()
        assert f"at most {MAX_SCOPES} scopes" in response.get_json()["errors"][0]["message"]


def test_a_thousand_scopes_with_a_valid_password_mint_no_huge_token(
    app: Flask, admin: tuple[str, str]
) -> None:
    response = _post(app, *admin, _scopes(1000))
    assert response.status_code == 400
    assert "token" not in response.get_json()


def test_the_password_is_checked_before_the_scopes_are_parsed(
    app: Flask, admin: tuple[str, str]
) -> None:
    malformed = ["repository:Not Valid:pull", "nonsense"]
    assert refused_as(_post(app, admin[0], "wrong", malformed), 401, "UNAUTHORIZED")
    assert refused_as(get_token(app, basic(admin[0], "wrong"), *malformed), 401, "UNAUTHORIZED")
    assert refused_as(get_token(app, {}, *malformed), 401, "UNAUTHORIZED")
    # with the right password, the malformed scope is named
    assert refused_as(_post(app, *admin, malformed), 400, "INVALID_REQUEST")


def test_the_largest_allowed_request_mints_a_bounded_token(
    app: Flask, admin: tuple[str, str]
) -> None:
    """``MAX_SCOPES`` distinct repositories with the longest names, every action, a class."""
    actions = "pull,push,delete,metadata_read,metadata_write,*"
    longest = [
        f"repository(plugin):{'n' * 200}/{i:02d}{'x' * 52}:{actions}" for i in range(MAX_SCOPES)
    ]
    assert all(len(s.split(":")[1]) == 255 for s in longest)
    response = get_token(app, basic(*admin), *longest)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["token"]
    assert len(token) <= MAX_TOKEN_BYTES
    assert len(token) > MAX_TOKEN_BYTES // 4  # the case is a real worst one, not a small token


def test_a_long_resource_class_is_refused(app: Flask, admin: tuple[str, str]) -> None:
    response = get_token(app, basic(*admin), f"repository({'c' * 100}):s/x:pull")
    assert refused_as(response, 400, "INVALID_REQUEST")
