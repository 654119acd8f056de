from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from fleet.api.scheduler import SchedulerStatus
from fleet.app import create_app
from fleet.services import Services
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory, enroll_many
from tests.support.fake_broker import FakeBroker

DEVICES = 3


def _client(fleet: Services) -> tuple[FlaskClient, dict[str, str]]:
    app = create_app(fleet.ctx.settings, fleet)
    _, key = fleet.api_keys.create("ops", actor="t")
    return app.test_client(), {"Authorization": f"Bearer {key}"}


def _error_code(response: Any) -> str:
    code: str = response.get_json()["error"]["code"]
    return code


def test_status_and_planned_disable_through_the_api(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    broker: FakeBroker,
    secret: str,
    clock: FakeClock,
) -> None:
    client, auth = _client(fleet)
    empty = client.get("/api/v1/scheduler", headers=auth).get_json()
    assert empty["lastRun"] is None and empty["enabled"] is False
    fleet.tokens.create("ci-pusher", scope_map="_repositories_push", actor="t")
    planned = client.patch(
        "/api/v1/tokens/ci-pusher", headers=auth, json={"disableAt": "2026-01-03T00:00:00Z"}
    ).get_json()
    assert planned["disableAt"] == "2026-01-03T00:00:00+00:00"
    past = client.patch(
        "/api/v1/tokens/ci-pusher", headers=auth, json={"disableAt": "2020-01-01T00:00:00Z"}
    )
    assert past.status_code == 400 and _error_code(past) == "InvalidDisableTime"
    enroll_many(fleet, secret, DEVICES)
    # Each device's first delivery was published at enrollment and never acknowledged: after
    # its 30 s backoff the pass publishes each of them again, and nothing else.
    published_before = len(broker.published)
    scheduler = make_scheduler(fleet)
    clock.advance(days=3)
    scheduler.tick()
    body = client.get("/api/v1/scheduler", headers=auth).get_json()
    SchedulerStatus.model_validate(body)
    assert body["lastRun"]["summary"] == {
        "rotated": 0,
        "retired": 0,
        "tokens_disabled": 1,
        "devices_disabled_inactive": 0,
        "warnings": 0,
        "published": DEVICES,
        "skipped": 0,
        "failed_steps": 0,
    }
    assert len(broker.published) - published_before == DEVICES
    assert body["nextRun"] > body["lastRun"]["startedAt"]
    token = client.get("/api/v1/tokens/ci-pusher", headers=auth).get_json()
    assert token["status"] == "disabled" and token["disableAt"] is None
    scheduler.stop()


def test_a_cancelled_planned_disable_never_happens(
    make_scheduler: SchedulerFactory, fleet: Services, broker: FakeBroker, clock: FakeClock
) -> None:
    client, auth = _client(fleet)
    fleet.tokens.create("ci-pusher", scope_map="_repositories_push", actor="t")
    client.patch(
        "/api/v1/tokens/ci-pusher", headers=auth, json={"disableAt": "2026-01-03T00:00:00Z"}
    )
    cancelled = client.patch("/api/v1/tokens/ci-pusher", headers=auth, json={"disableAt": None})
    assert cancelled.status_code == 200
    assert cancelled.get_json()["disableAt"] is None
    shown = client.get("/api/v1/tokens/ci-pusher", headers=auth).get_json()
    assert shown["disableAt"] is None and shown["status"] == "enabled"
    scheduler = make_scheduler(fleet)
    clock.advance(days=3)  # a day past the date that was planned
    summary = scheduler.tick()
    scheduler.stop()
    assert summary is not None and summary.tokens_disabled == 0
    after = client.get("/api/v1/tokens/ci-pusher", headers=auth).get_json()
    assert after["status"] == "enabled" and after["disableAt"] is None
    assert fleet.tokens.show("ci-pusher").status == "enabled"
