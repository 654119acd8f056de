"""Every time field of the API: a time without a zone, or out of range, is a 400, never a 500.

Issue 12, defect 10: a naive ``expiry`` for a group's secret and a naive ``disableAt`` were 500s.
"""

from __future__ import annotations

from typing import Any

import pytest

HELLO = [{"repository": "samples/hello-world", "actions": ["content/read"]}]

NAIVE = "2030-01-01T00:00:00"
# Aware, but out of any range a database or a date can hold once turned into UTC.
OVERFLOWS = "9999-12-31T23:59:59-23:00"
TOO_FAR = "2999-01-01T00:00:00Z"
BAD = [
    pytest.param(NAIVE, "time zone", id="naive"),
    pytest.param(OVERFLOWS, "out of range", id="overflows"),
    pytest.param(TOO_FAR, "3650 days", id="too-far-ahead"),
]


def _refused(response: Any, field: str, why: str) -> None:
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert field in error["message"] and why in error["message"], error


@pytest.mark.parametrize(("value", "why"), BAD)
def test_token_expiry(api, value: str, why: str) -> None:  # type: ignore[no-untyped-def]
    response = api("POST", "/tokens", {"name": "MyToken", "repositories": HELLO, "expiry": value})
    _refused(response, "expiry", why)
    assert api("GET", "/tokens").get_json()["value"] == []


@pytest.mark.parametrize(("value", "why"), BAD)
def test_credential_expiry(api, value: str, why: str) -> None:  # type: ignore[no-untyped-def]
    assert api("POST", "/tokens", {"name": "MyToken", "repositories": HELLO}).status_code == 201
    before = api("GET", "/tokens/MyToken").get_json()["credentials"]
    response = api(
        "POST",
        "/tokens/MyToken/credentials/generate",
        {"passwords": ["password1"], "expiry": value},
    )
    _refused(response, "expiry", why)
    assert api("GET", "/tokens/MyToken").get_json()["credentials"] == before


@pytest.mark.parametrize(("value", "why"), BAD)
def test_token_disable_at(api, value: str, why: str) -> None:  # type: ignore[no-untyped-def]
    assert api("POST", "/tokens", {"name": "MyToken", "repositories": HELLO}).status_code == 201
    response = api("PATCH", "/tokens/MyToken", {"disableAt": value})
    _refused(response, "disable", why)
    assert api("GET", "/tokens/MyToken").get_json()["disableAt"] is None


@pytest.mark.parametrize(("value", "why"), BAD)
def test_group_secret_expiry(api, group: str, value: str, why: str) -> None:  # type: ignore[no-untyped-def]
    response = api("POST", f"/groups/{group}/secrets", {"expiry": value})
    _refused(response, "expiry", why)
    assert api("GET", f"/groups/{group}").get_json()["secrets"] == []


def test_aware_times_in_any_zone_are_kept_as_the_same_instant(api, group: str) -> None:  # type: ignore[no-untyped-def]
    made = api("POST", f"/groups/{group}/secrets", {"expiry": "2030-01-01T02:00:00+02:00"})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["expiresAt"] == "2030-01-01T00:00:00+00:00"
    assert api("POST", "/tokens", {"name": "MyToken", "repositories": HELLO}).status_code == 201
    planned = api("PATCH", "/tokens/MyToken", {"disableAt": "2030-01-01T00:00:00-05:00"})
    assert planned.status_code == 200, planned.get_json()
    assert planned.get_json()["disableAt"] == "2030-01-01T05:00:00+00:00"
