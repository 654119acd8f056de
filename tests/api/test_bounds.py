"""Every number and duration that enters the API has a bound; out of it: 400, nothing changed.

Issue 12, defect 6: ``inactivityLimitDays: 99999999999`` was accepted and then stopped every
reconciler pass.
"""

from __future__ import annotations

from typing import Any

import pytest

HUGE = 99_999_999_999


GROUP_BAD = [
    ({"inactivityLimitDays": HUGE}, "InvalidInactivityLimit"),
    ({"inactivityLimitDays": 3651}, "InvalidInactivityLimit"),
    ({"inactivityLimitDays": 0}, "InvalidInactivityLimit"),
    ({"passwordLifetimeDays": HUGE}, "InvalidPasswordLifetime"),
    ({"passwordLifetimeDays": -1}, "InvalidPasswordLifetime"),
    ({"rotationWindowDays": HUGE}, "InvalidRotationWindow"),
    ({"rotationWindowDays": 0}, "InvalidRotationWindow"),
    ({"passwordLifetimeDays": 10**40}, "InvalidPasswordLifetime"),
]


def _error(response: Any, code: str) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize(("change", "code"), GROUP_BAD)
def test_group_durations_are_bounded_on_create(api, group: str, change: dict, code: str) -> None:  # type: ignore[no-untyped-def]
    response = api("POST", "/groups", {"name": "second", "scopeMap": "edge-read", **change})
    _error(response, code)
    assert [g["name"] for g in api("GET", "/groups").get_json()["value"]] == [group]


@pytest.mark.parametrize(("change", "code"), GROUP_BAD)
def test_group_durations_are_bounded_on_update(api, group: str, change: dict, code: str) -> None:  # type: ignore[no-untyped-def]
    before = api("GET", f"/groups/{group}").get_json()
    _error(api("PATCH", f"/groups/{group}", change), code)
    assert api("GET", f"/groups/{group}").get_json() == before


def test_the_largest_allowed_durations_are_accepted(api, group: str) -> None:  # type: ignore[no-untyped-def]
    changed = api(
        "PATCH",
        f"/groups/{group}",
        {"passwordLifetimeDays": 3650, "rotationWindowDays": 3649, "inactivityLimitDays": 3650},
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["inactivityLimitDays"] == 3650


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tokens", {"name": "MyToken", "expirationInDays": HUGE}),
        ("POST", "/groups/pilots/secrets", {"expirationInDays": HUGE}),
        ("POST", "/groups/pilots/secrets", {"expirationInDays": 0}),
        ("GET", f"/tokens?limit={HUGE}", None),
        ("GET", "/tokens?limit=0", None),
        ("GET", f"/groups?limit={10**40}", None),
        ("GET", f"/devices?limit={HUGE}", None),
        ("GET", f"/groups/pilots/secrets?limit={HUGE}", None),
    ],
)
def test_counts_and_days_out_of_range_are_400(
    api, group: str, method: str, path: str, body: Any
) -> None:  # type: ignore[no-untyped-def]
    response = api(method, path, body)
    assert response.status_code == 400, response.get_json()
    assert api("GET", "/tokens").get_json()["value"] == []
    assert api("GET", f"/groups/{group}").get_json()["secrets"] == []
