"""What the schemathesis run (tests/e2e/fuzz) found, each pinned by a plain test here.

Every answer of the API is a documented status with a body its document describes; never a 500.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fleet.api import PREFIX, api
from fleet.app import create_app
from fleet.services import Services
from fleet.services.delivery import RETRY_BASE, RETRY_CAP, retry_delay
from tests.services.devices.conftest import broker, fleet, new_device, secret

__all__ = ["broker", "fleet", "secret"]  # fixtures of tests/services/devices, used here


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


# Redelivering (or disabling) a device whose delivery stays unacknowledged doubles the retry
# delay each time: from the 43rd attempt on, 30 s * 2**(attempts-1) no longer fits a timedelta and
# every publish of that device was a 500 (OverflowError), in the scheduler's pass too.
ATTEMPTS_PAST_THE_OVERFLOW = 48


def test_redelivering_many_times_stays_a_200(fleet: Services, secret: str) -> None:
    app = create_app(fleet.ctx.settings, fleet)
    _, key = fleet.api_keys.create("ops", actor="t")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    fleet.devices.enroll("rpi-0042", secret, *new_device("rpi-0042").keys)
    for attempt in range(ATTEMPTS_PAST_THE_OVERFLOW):
        answer = client.post("/api/v1/devices/rpi-0042/redeliver", headers=headers)
        assert answer.status_code == 200, (attempt, answer.get_json())
    assert client.post("/api/v1/devices/rpi-0042/disable", headers=headers).status_code == 200


@pytest.mark.parametrize("attempts", [1, 2, 8, 43, 10_000, 10**9])
def test_the_retry_delay_is_capped_for_any_number_of_attempts(attempts: int) -> None:
    delay = retry_delay(attempts)
    assert RETRY_BASE <= delay <= RETRY_CAP


# A request line longer than gunicorn's limit (limit_request_line, 4094 bytes by default) is
# answered 414 by gunicorn itself, as HTML, before the API sees it: the document said every
# answer other than success was a JSON error.
def test_every_operation_documents_the_servers_414() -> None:
    document = api.document(PREFIX)
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            answer = operation["responses"].get("414")
            assert answer is not None, (method, path)
            assert list(answer["content"]) == ["text/html"], (method, path)


# Found by the nightly run on PostgreSQL: `POST /groups {"scopeMap": "\u0000±"}` was a 500.
# PostgreSQL's text cannot hold U+0000, so any name, search or value with one failed there in
# the query, wherever it came from (JSON, the path, the query string, a form).
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/groups", {"name": "certificates", "scopeMap": "\x00±"}, id="json"),
        pytest.param("POST", "/scope-maps", {"name": "a\x00b", "rules": []}, id="json-name"),
        pytest.param("GET", "/scope-maps/edge%00read", None, id="path"),
        pytest.param("GET", "/devices?q=rpi%00", None, id="query"),
    ],
)
def test_a_nul_character_anywhere_is_a_400(api, method: str, path: str, body: object) -> None:  # type: ignore[no-untyped-def]
    _refused(api(method, path, body), "U+0000")


def test_a_nul_character_in_a_dashboard_form_is_a_400(app, services: Services) -> None:  # type: ignore[no-untyped-def]
    answer = app.test_client().post("/ui/sign-in", data={"name": "alice\x00", "password": "x"})
    assert answer.status_code == 400
    assert "U+0000" in answer.get_data(as_text=True)


@pytest.mark.parametrize("via", ["basic", "form"])
def test_a_nul_character_at_the_token_endpoint_is_refused_not_a_500(app, via: str) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    if via == "basic":
        login = base64.b64encode(b"dev-\x00x:password").decode()
        answer = client.get("/oauth2/token", headers={"Authorization": f"Basic {login}"})
        assert answer.status_code == 401
    else:
        form = {"grant_type": "password", "username": "dev-\x00x", "password": "p"}
        answer = client.post("/oauth2/token", data=form)
        assert answer.status_code == 400
        assert "U+0000" in answer.get_json()["errors"][0]["message"]
