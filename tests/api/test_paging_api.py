"""Every list of the REST API is paged: limit, cursor, nextCursor, and their errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fleet.api import api as registry
from fleet.api.device_schemas import DeviceList, GroupList, SecretList
from fleet.api.schemas import ScopeMapList, ScopeMapTokens, TokenList
from fleet.services import Services

PULL = "_repositories_pull"
LISTS = [
    "/tokens",
    "/scope-maps",
    f"/scope-maps/{PULL}/tokens",
    "/groups",
    "/groups/group-0/secrets",
    "/devices",
    "/jobs",
]


def _walk(api: Any, path: str, limit: int, field: str = "value") -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    sep = "&" if "?" in path else "?"
    while True:
        query = f"{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = api("GET", path + query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) == {field, "nextCursor"}
        pages.append(body[field])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


@pytest.fixture
def filled(services: Services) -> Services:
    for i in range(12):
        services.tokens.create(f"token-{i:02d}", scope_map=PULL, actor="test")
    for i in range(3):
        services.groups.create(f"group-{i}", scope_map=PULL, actor="test")
    for one_time in (False, True, True, False, True):
        services.groups.create_secret("group-0", one_time=one_time, actor="test")
    return services


def test_walks_follow_next_cursor_to_the_end(api: Any, filled: Services) -> None:
    pages = _walk(api, "/tokens", 5)
    assert [len(p) for p in pages] == [5, 5, 2]
    names = [t["name"] for p in pages for t in p]
    assert names == [f"token-{i:02d}" for i in range(12)]
    TokenList.model_validate({"value": pages[0], "nextCursor": "x"})
    maps = [m["name"] for p in _walk(api, "/scope-maps", 2) for m in p]
    assert len(maps) == 5 and len(set(maps)) == 5
    users = _walk(api, f"/scope-maps/{PULL}/tokens", 7, field="tokens")
    assert [n for p in users for n in p] == names
    groups = [g["name"] for p in _walk(api, "/groups", 2) for g in p]
    assert groups == ["group-0", "group-1", "group-2"]
    assert _walk(api, "/devices?group=group-0&status=active", 3) == [[]]
    secrets = [x for p in _walk(api, "/groups/group-0/secrets", 2) for x in p]
    assert [x["kind"] for x in secrets] == ["secret", "code", "code", "secret", "code"]
    assert all("value" not in x for x in secrets)
    assert sorted(x["id"] for x in secrets) == [x["id"] for x in secrets]


def test_a_short_list_answers_as_before_plus_a_null_cursor(api: Any, filled: Services) -> None:
    for path, model in [
        ("/tokens", TokenList),
        ("/scope-maps", ScopeMapList),
        (f"/scope-maps/{PULL}/tokens", ScopeMapTokens),
        ("/groups", GroupList),
        ("/groups/group-1/secrets", SecretList),
        ("/devices", DeviceList),
    ]:
        body = api("GET", path).get_json()
        model.model_validate(body)
        assert body["nextCursor"] is None


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten", "2.5"])
def test_limits_out_of_range_are_400(api: Any, path: str, limit: str) -> None:
    response = api("GET", f"{path}?limit={limit}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "InvalidLimit" and "1 to 1000" in error["message"]


@pytest.mark.parametrize("path", LISTS)
def test_limit_bounds_are_accepted(api: Any, filled: Services, path: str) -> None:
    for limit in ("1", "1000"):
        assert api("GET", f"{path}?limit={limit}").status_code == 200


def test_bad_cursors_are_400(api: Any, filled: Services) -> None:
    tokens_cursor = api("GET", "/tokens?limit=2").get_json()["nextCursor"]
    groups_cursor = api("GET", "/groups?limit=1").get_json()["nextCursor"]
    secrets_cursor = api("GET", "/groups/group-0/secrets?limit=1").get_json()["nextCursor"]
    body, tag = tokens_cursor.split(".")
    for path, cursor in [
        ("/tokens", "garbage"),
        ("/tokens", body),
        ("/tokens", f"{body}.{'0' * len(tag)}"),
        ("/tokens", "eyJ4Ijoxfq." + tag),
        ("/tokens", groups_cursor),
        ("/groups", tokens_cursor),
        (f"/scope-maps/{PULL}/tokens", tokens_cursor),
        ("/devices", tokens_cursor),
        ("/groups/group-1/secrets", secrets_cursor),
    ]:
        response = api("GET", f"{path}?cursor={cursor}")
        assert response.status_code == 400, (path, cursor)
        error = response.get_json()["error"]
        assert error["code"] == "InvalidCursor" and "nextCursor" in error["message"]


def test_unknown_device_status_is_400(api: Any) -> None:
    response = api("GET", "/devices?status=sleeping")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "InvalidStatus"


def test_openapi_documents_paging_on_every_list(app: Any) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    lists = 0
    for op in registry.operations:
        schema = schemas.get(op.response.__name__) if op.response else None
        props = (schema or {}).get("properties", {})
        is_list = op.method == "GET" and any(
            p.get("type") == "array" and name in ("value", "tokens") for name, p in props.items()
        )
        if not is_list:
            continue
        lists += 1
        path = "/api/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", op.rule)
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        limit = params["limit"]["schema"]
        assert limit == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
        assert params["cursor"]["schema"] == {"type": "string"} and not params["cursor"]["required"]
        assert "nextCursor" in props and "nextCursor" not in schema.get("required", [])
    assert lists == len(LISTS)
