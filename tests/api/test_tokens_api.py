from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from fleet.api.schemas import CredentialsOut, ScopeMapList, ScopeMapOut, TokenList, TokenOut

HELLO = [{"repository": "samples/hello-world", "actions": ["content/write", "content/read"]}]


def valid(model: type[BaseModel], data: object) -> None:
    """Responses match the models the OpenAPI document is built from (extra keys refused)."""
    model.model_validate(data)


def test_requires_an_api_key(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer flta_" + "A" * 42},
        {"Authorization": "Basic x"},
    ):
        response = client.get("/api/v1/tokens", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_stops_working(app, services) -> None:  # type: ignore[no-untyped-def]
    _, key = services.api_keys.create("temp", actor="t")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/tokens", headers=auth).status_code == 200
    services.api_keys.revoke("temp", actor="t")
    refused = client.get("/api/v1/tokens", headers=auth)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "Unauthorized"


def test_token_lifecycle(api) -> None:  # type: ignore[no-untyped-def]
    created = api("POST", "/tokens", {"name": "MyToken", "repositories": HELLO})
    assert created.status_code == 201
    body = created.get_json()
    valid(TokenOut, body)
    assert body["credentials"]["username"] == "MyToken"
    assert [p["name"] for p in body["credentials"]["passwords"]] == ["password1", "password2"]
    assert all(p["value"].startswith("fltp_") for p in body["credentials"]["passwords"])
    assert body["scopeMapId"].endswith("/scopeMaps/MyToken-scope-map")
    assert body["status"] == "enabled" and body["provisioningState"] == "Succeeded"

    shown = api("GET", "/tokens/MyToken").get_json()
    valid(TokenOut, shown)
    assert all("value" not in p for p in shown["credentials"]["passwords"])

    listed = api("GET", "/tokens").get_json()
    valid(TokenList, listed)
    assert [t["name"] for t in listed["value"]] == ["MyToken"]

    generated = api(
        "POST",
        "/tokens/MyToken/credentials/generate",
        {"passwords": ["password1"], "expirationInDays": 30},
    )
    valid(CredentialsOut, generated.get_json())
    assert generated.get_json()["passwords"][0]["expiry"].startswith("2026-01-31")

    assert shown["registryAccessEndsBy"] is None and shown["registryAccessEnded"] is None
    updated = api("PATCH", "/tokens/MyToken", {"status": "disabled"}).get_json()
    assert updated["status"] == "disabled"
    # A JWT issued the moment before lives the setting's 300 s, plus the registry's leeway.
    ends_by = datetime.fromisoformat(updated["registryAccessEndsBy"])
    assert ends_by == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=1 + 300 + 60)
    assert updated["registryAccessEnded"] is False
    after = api("DELETE", "/tokens/MyToken/credentials/password2").get_json()
    assert [p["name"] for p in after["credentials"]["passwords"]] == ["password1"]
    assert after["registryAccessEndsBy"] == updated["registryAccessEndsBy"]  # disabled: no more
    deleted = api("DELETE", "/tokens/MyToken")
    assert deleted.status_code == 200
    assert deleted.get_json()["registryAccessEndsBy"] == updated["registryAccessEndsBy"]
    gone = api("GET", "/tokens/MyToken")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "TokenNotFound"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "MyToken"}, 400, "InvalidRequest"),
        (
            {"name": "MyToken", "scopeMap": "_repositories_pull", "repositories": HELLO},
            400,
            "InvalidRequest",
        ),
        (
            {
                "name": "MyToken",
                "repositories": [{"repository": "samples/*/x", "actions": ["content/read"]}],
            },
            400,
            "InvalidRule",
        ),
        (
            {"name": "MyToken", "repositories": HELLO, "expiry": "2020-01-01T00:00:00Z"},
            400,
            "InvalidExpiry",
        ),
        (
            {"name": "MyToken", "repositories": HELLO, "expiry": "2030-01-01T00:00:00"},
            400,
            "InvalidRequest",
        ),
        (
            {
                "name": "MyToken",
                "repositories": HELLO,
                "expiry": "2030-01-01T00:00:00Z",
                "expirationInDays": 3,
            },
            400,
            "InvalidRequest",
        ),
        ({"name": "MyToken", "repositories": HELLO, "surprise": 1}, 400, "InvalidRequest"),
        ({"name": "MyToken", "scopeMap": "NoSuchMap"}, 404, "ScopeMapNotFound"),
        ({"name": "x", "scopeMap": "_repositories_pull"}, 400, "InvalidName"),
    ],
)
def test_bad_token_requests(api, body: dict, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    response = api("POST", "/tokens", body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert api("GET", "/tokens").get_json()["value"] == []


def test_non_json_body(api) -> None:  # type: ignore[no-untyped-def]
    response = api.client.post("/api/v1/tokens", data="nope", headers=api.headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "InvalidRequest"


def test_scope_map_routes(api) -> None:  # type: ignore[no-untyped-def]
    created = api(
        "POST",
        "/scope-maps",
        {"name": "MyScopeMap", "repositories": HELLO, "description": "Sample scope map"},
    )
    assert created.status_code == 201
    valid(ScopeMapOut, created.get_json())
    assert created.get_json()["actions"] == [
        "repositories/samples/hello-world/content/read",
        "repositories/samples/hello-world/content/write",
    ]
    listed = api("GET", "/scope-maps").get_json()
    valid(ScopeMapList, listed)
    assert [m["scopeMapType"] for m in listed["value"]].count("SystemDefined") == 5
    api("POST", "/tokens", {"name": "MyToken", "scopeMap": "MyScopeMap"})
    assert api("GET", "/scope-maps/MyScopeMap/tokens").get_json() == {
        "tokens": ["MyToken"],
        "nextCursor": None,
    }
    patched = api(
        "PATCH",
        "/scope-maps/MyScopeMap",
        {
            "addRepositories": [{"repository": "samples/nginx", "actions": ["content/read"]}],
            "removeRepositories": [
                {"repository": "samples/hello-world", "actions": ["content/write"]}
            ],
        },
    ).get_json()
    assert patched["actions"] == [
        "repositories/samples/hello-world/content/read",
        "repositories/samples/nginx/content/read",
    ]
    readonly = api("PATCH", "/scope-maps/_repositories_pull", {"description": "x"})
    assert (
        readonly.status_code == 403 and readonly.get_json()["error"]["code"] == "ScopeMapReadOnly"
    )
    deleted = api("DELETE", "/scope-maps/MyScopeMap").get_json()
    assert deleted == {"tokensWithoutPermissions": ["MyToken"]}
    assert api("GET", "/tokens/MyToken").get_json()["scopeMapId"] is None


def test_unknown_route_is_json(api) -> None:  # type: ignore[no-untyped-def]
    response = api("GET", "/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "NotFound"
