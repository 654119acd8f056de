"""The token endpoint through the Flask test client (the real registry is in tests/e2e)."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask import Flask

from fleet.app import create_app
from fleet.domain.rules import RepositoryActions
from fleet.registry_auth.keyring import KeyRing
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S
from fleet.services import Services
from fleet.services.shared_keys import DatabaseRingStore, SharedKeys

SERVICE = "fleet-registry"


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services.ctx.settings, services)


@pytest.fixture
def token(services: Services) -> tuple[str, str]:
    rules = [
        RepositoryActions("sample/*", ("content/read",)),
        RepositoryActions("sample/teama/*", ("content/write",)),
        RepositoryActions("sample/teama/projectb", ("content/delete",)),
    ]
    made = services.tokens.create("MyToken", repositories=rules, actor="t")
    return "MyToken", made.passwords[0].value or ""


def basic(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def claims(app: Flask, body: dict[str, Any]) -> dict[str, Any]:
    jwks = app.test_client().get("/.well-known/jwks.json").get_json()
    header = jwt.get_unverified_header(body["token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert header["alg"] == "ES256" and header["x5c"]
    public = jwt.PyJWK(key).key
    decoded: dict[str, Any] = jwt.decode(
        body["token"], public, algorithms=["ES256"], audience=SERVICE, issuer="fleet"
    )
    return decoded


def refused_as(response: Any, status: int, code: str) -> bool:
    """The answer is ``status`` with the distribution-spec error ``code``."""
    return bool(response.status_code == status and response.get_json()["errors"][0]["code"] == code)


def get_token(app: Flask, auth: dict[str, str], *scopes: str, **params: str) -> Any:
    query = {"service": SERVICE, **params}
    return app.test_client().get(
        "/oauth2/token",
        query_string=[*query.items(), *(("scope", s) for s in scopes)],
        headers=auth,
    )


def test_grants_are_the_allowed_subset(app: Flask, token: tuple[str, str]) -> None:
    response = get_token(
        app,
        basic(*token),
        "repository:sample/teama/projectb:pull,push,delete",
        "repository:sample/teama/projectc:pull,push,delete",
        "repository:sample/teamb/x:pull,push",
        "repository:other/x:pull",
        "registry:catalog:*",
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300 and body["issued_at"]
    assert "refresh_token" not in body
    decoded = claims(app, body)
    assert decoded["sub"] == "MyToken"
    assert decoded["exp"] - decoded["iat"] == 300
    assert {"jti", "nbf"} <= set(decoded)
    assert decoded["access"] == [
        {
            "type": "repository",
            "name": "sample/teama/projectb",
            "actions": ["pull", "push", "delete"],
        },
        {"type": "repository", "name": "sample/teama/projectc", "actions": ["pull", "push"]},
        {"type": "repository", "name": "sample/teamb/x", "actions": ["pull"]},
    ]


def test_star_only_when_everything_is_allowed(app: Flask, services: Services) -> None:
    made = services.tokens.create("AdminTok", scope_map="_repositories_admin", actor="t")
    body = get_token(
        app,
        basic("AdminTok", made.passwords[0].value or ""),
        "repository:a/b:*",
        "repository:a/b:metadata_read",
    ).get_json()
    assert claims(app, body)["access"] == [
        {"type": "repository", "name": "a/b", "actions": ["*", "metadata_read"]}
    ]
    pull_only = services.tokens.create("PullTok", scope_map="_repositories_pull", actor="t")
    body = get_token(
        app, basic("PullTok", pull_only.passwords[0].value or ""), "repository:a/b:*"
    ).get_json()
    assert claims(app, body)["access"] == []


@pytest.mark.parametrize(
    "auth",
    [
        {},
        basic("MyToken", "wrong"),
        basic("Nobody", "whatever"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer x"},
    ],
)
def test_refused_logins_are_401_with_basic_challenge(
    app: Flask, token: tuple[str, str], auth: dict[str, str]
) -> None:
    response = get_token(app, auth, "repository:sample/x:pull")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert response.get_json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_disabled_expired_and_deleted(
    app: Flask, services: Services, token: tuple[str, str], clock
) -> None:  # type: ignore[no-untyped-def]
    ok = basic(*token)
    services.tokens.update("MyToken", status="disabled", actor="t")
    assert refused_as(get_token(app, ok), 401, "UNAUTHORIZED")
    services.tokens.update("MyToken", status="enabled", actor="t")
    assert get_token(app, ok).status_code == 200
    _, fresh = services.tokens.generate_credentials(
        "MyToken", ["password1"], expiry=clock() + timedelta(hours=1), actor="t"
    )
    assert refused_as(get_token(app, ok), 401, "UNAUTHORIZED")  # replaced
    new = basic("MyToken", fresh[0].value or "")
    assert get_token(app, new).status_code == 200
    clock.advance(hours=1)
    assert refused_as(get_token(app, new), 401, "UNAUTHORIZED")  # expired
    services.tokens.delete("MyToken", actor="t")
    assert refused_as(get_token(app, ok), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("scope", "fragment"),
    [
        ("repository:Bad/Name:pull", "repository name"),
        ("repository:samples/x", "scope"),
        ("nonsense", "scope"),
    ],
)
def test_malformed_scope_is_400(
    app: Flask, token: tuple[str, str], scope: str, fragment: str
) -> None:
    response = get_token(app, basic(*token), scope)
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["code"] == "INVALID_REQUEST" and fragment in error["message"].lower()


def test_unknown_service_is_400(app: Flask, token: tuple[str, str]) -> None:
    response = app.test_client().get(
        "/oauth2/token", query_string={"service": "elsewhere"}, headers=basic(*token)
    )
    assert refused_as(response, 400, "INVALID_REQUEST")
    assert "elsewhere" in response.get_json()["errors"][0]["message"]


def test_oauth2_password_and_refresh_grants(
    app: Flask, services: Services, token: tuple[str, str]
) -> None:
    client = app.test_client()
    name, password = token
    first = client.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": name,
            "password": password,
            "service": SERVICE,
            "scope": "repository:sample/a:pull repository:sample/teama/b:push",
            "access_type": "offline",
            "client_id": "tests",
        },
    )
    assert first.status_code == 200
    body = first.get_json()
    assert claims(app, body)["access"] == [
        {"type": "repository", "name": "sample/a", "actions": ["pull"]},
        {"type": "repository", "name": "sample/teama/b", "actions": ["push"]},
    ]
    refresh = body["refresh_token"]
    again = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": SERVICE,
            "scope": "repository:sample/a:pull",
            "client_id": "tests",
        },
    )
    assert again.status_code == 200
    assert claims(app, again.get_json())["sub"] == name
    # a refresh token dies with its password
    services.tokens.generate_credentials(name, ["password1"], actor="t")
    dead = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE},
    )
    assert refused_as(dead, 401, "UNAUTHORIZED")
    forged = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh[:-4] + "AAAA"},
    )
    assert refused_as(forged, 401, "UNAUTHORIZED")
    magic = client.post("/oauth2/token", data={"grant_type": "magic"})
    assert refused_as(magic, 400, "UNSUPPORTED_GRANT_TYPE")


def _refresh(app: Flask, refresh: str) -> Any:
    return app.test_client().post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE},
    )


def test_a_revoked_keys_refresh_tokens_and_jwks_entry_are_gone_at_once(
    app: Flask, services: Services, token: tuple[str, str]
) -> None:
    body = get_token(app, basic(*token), offline_token="true").get_json()
    refresh = body["refresh_token"]
    compromised = jwt.get_unverified_header(refresh)["kid"]
    assert jwt.get_unverified_header(body["token"])["kid"] == compromised
    assert _refresh(app, refresh).status_code == 200
    # The operator's `fleet keys revoke`, in another process: its own ring on the same database.
    store = DatabaseRingStore(SharedKeys.of(services.ctx))
    fresh = KeyRing.open_store(store).revoke(compromised)
    assert fresh is not None
    # Refresh tokens and the JWKS reread the ring on every request: no recheck interval.
    assert refused_as(_refresh(app, refresh), 401, "UNAUTHORIZED")
    jwks = app.test_client().get("/.well-known/jwks.json").get_json()
    assert compromised not in {key["kid"] for key in jwks["keys"]}
    assert fresh.kid in {key["kid"] for key in jwks["keys"]}
    time.sleep(RING_CHECK_INTERVAL_S)  # past the recheck interval, this worker signs with it
    renewed = get_token(app, basic(*token), offline_token="true").get_json()
    assert jwt.get_unverified_header(renewed["token"])["kid"] == fresh.kid
    assert jwt.get_unverified_header(renewed["refresh_token"])["kid"] == fresh.kid
    assert claims(app, _refresh(app, renewed["refresh_token"]).get_json())["sub"] == token[0]


def test_offline_token_on_get(app: Flask, token: tuple[str, str]) -> None:
    body = get_token(app, basic(*token), offline_token="true").get_json()
    assert body["refresh_token"]


def test_burst_of_wrong_passwords_is_throttled_but_the_holder_gets_in(
    app: Flask, token: tuple[str, str]
) -> None:
    wrong = basic(token[0], "wrong")
    codes = [get_token(app, wrong).status_code for _ in range(15)]
    assert codes[:10] == [401] * 10
    assert set(codes[10:]) == {429}
    limited = get_token(app, wrong)
    assert int(limited.headers["Retry-After"]) >= 1
    assert get_token(app, basic(*token)).status_code == 200  # never locked out
