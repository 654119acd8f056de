"""What the schemathesis run (tests/fuzz) found, each pinned by a plain test here.

Every answer of the API is a documented status with a body its document describes; never a 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleet.domain.rules import RepositoryActions
from fleet.services import Services


@pytest.fixture
def group(services: Services) -> str:
    services.scope_maps.create(
        "edge-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="edge-read", actor="t")
    return "pilots"


def _refused(response: Any, *words: str) -> None:
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["error"]["message"]
    assert all(word in message for word in words), message


# A null where the document allows none: passwordLifetimeDays null was a 500 (TypeError in the
# duration check); requireApproval null silently turned approval off.
@pytest.mark.parametrize(
    "field", ["passwordLifetimeDays", "rotationWindowDays", "scopeMap", "requireApproval"]
)
def test_a_group_change_to_null_is_refused_and_changes_nothing(api, group: str, field: str) -> None:  # type: ignore[no-untyped-def]
    api("PATCH", f"/groups/{group}", {"requireApproval": True})
    before = api("GET", f"/groups/{group}").get_json()
    _refused(api("PATCH", f"/groups/{group}", {field: None}), field, "null")
    assert api("GET", f"/groups/{group}").get_json() == before


def test_a_group_inactivity_limit_of_null_still_means_none(api, group: str) -> None:  # type: ignore[no-untyped-def]
    assert api("PATCH", f"/groups/{group}", {"inactivityLimitDays": 30}).status_code == 200
    changed = api("PATCH", f"/groups/{group}", {"inactivityLimitDays": None})
    assert changed.status_code == 200 and changed.get_json()["inactivityLimitDays"] is None
