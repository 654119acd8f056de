from __future__ import annotations

from fleet.api.scheduler import SchedulerStatus
from fleet.app import create_app
from fleet.scheduler import FleetScheduler
from fleet.services import Services
from tests.scheduler.conftest import enroll_many
from tests.support.fake_broker import FakeBroker


def test_status_and_planned_disable_through_the_api(
    fleet: Services, broker: FakeBroker, secret: str, clock
) -> None:  # type: ignore[no-untyped-def]
    app = create_app(fleet.ctx.settings, fleet)
    _, key = fleet.api_keys.create("ops", actor="t")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
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
    assert past.status_code == 400
    enroll_many(fleet, secret, 3)
    scheduler = FleetScheduler(fleet)
    clock.advance(days=3)
    scheduler.tick()
    body = client.get("/api/v1/scheduler", headers=auth).get_json()
    SchedulerStatus.model_validate(body)
    assert body["lastRun"]["summary"]["tokens_disabled"] == 1
    assert body["lastRun"]["summary"]["published"] >= 0
    assert body["nextRun"] > body["lastRun"]["startedAt"]
    token = client.get("/api/v1/tokens/ci-pusher", headers=auth).get_json()
    assert token["status"] == "disabled" and token["disableAt"] is None
    cancelled = client.patch("/api/v1/tokens/ci-pusher", headers=auth, json={"disableAt": None})
    assert cancelled.status_code == 200
    scheduler.stop()
