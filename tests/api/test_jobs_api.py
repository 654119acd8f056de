"""``POST /groups/{name}/rotate|disable`` and ``GET /jobs/{id}`` (fleet/api/jobs.py) through
Flask's test client on each database, the devices on the fake broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlmodel import select

from fleet.db.devices import DISABLED, Device
from fleet.db.jobs import BulkJob
from fleet.db.models import AuditEvent
from fleet.services import Services
from tests.api.conftest import Client
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker

DEVICES = 6


@pytest.fixture
def devices(services: Services, group: str) -> list[str]:
    services.broker = FakeBroker()
    secret = services.groups.create_secret(group, actor="t").value or ""
    ids = [f"rpi-{i:03d}" for i in range(DEVICES)]
    for device_id in ids:
        services.devices.enroll(device_id, secret, *new_device(device_id).keys)
    return ids


def follow(api: Client, job_id: int, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = api("GET", f"/jobs/{job_id}").get_json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def job_rows(services: Services) -> list[BulkJob]:
    with services.ctx.db.session() as s:
        return list(s.exec(select(BulkJob)).all())


@pytest.mark.parametrize("kind", ["rotate", "disable"])
def test_a_group_job_is_accepted_then_followed_to_its_end(
    api: Client, services: Services, devices: list[str], kind: str
) -> None:
    answer = api("POST", f"/groups/pilots/{kind}")
    assert answer.status_code == 202
    job = answer.get_json()
    assert answer.headers["Location"] == job["url"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["group"], job["total"]) == (kind, "pilots", DEVICES)
    assert job["state"] in ("queued", "running", "done")
    assert job["actor"] == "api-key:tester"

    end = follow(api, job["id"])
    assert (end["state"], end["done"], end["failed"], end["errors"]) == ("done", DEVICES, 0, [])
    assert end["startedAt"] and end["finishedAt"]
    with services.ctx.db.session() as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.action == f"device.{kind}")).all()
        assert {e.actor for e in events} == {"api-key:tester"}
        assert len(events) == DEVICES
        if kind == "disable":
            assert {d.status for d in s.exec(select(Device))} == {DISABLED}
    listed = api("GET", "/jobs?limit=5").get_json()
    assert [j["id"] for j in listed["value"]] == [job["id"]] and listed["nextCursor"] is None


def test_a_second_request_while_one_runs_is_409_naming_it(
    api: Client, services: Services, devices: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.jobs, "run_in_background", lambda job_id: None)  # stays queued
    first = api("POST", "/groups/pilots/rotate").get_json()
    second = api("POST", "/groups/pilots/rotate")
    assert second.status_code == 409
    error = second.get_json()["error"]
    assert error["code"] == "JobRunning" and f"job {first['id']}" in error["message"]
    assert len(job_rows(services)) == 1


def test_disable_takes_a_reason(api: Client, services: Services, devices: list[str]) -> None:
    job = api("POST", "/groups/pilots/disable", {"reason": "stolen lorry"}).get_json()
    assert follow(api, job["id"])["reason"] == "stolen lorry"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/groups/nobody/rotate", None, 404),
        ("POST", "/groups/pilots/disable", {"reason": ""}, 400),
        ("POST", "/groups/pilots/disable", {"reason": "x" * 257}, 400),
        ("POST", "/groups/pilots/disable", {"why": "typo"}, 400),
        ("POST", "/groups/pilots/disable", ["not", "an", "object"], 400),
        ("GET", "/jobs/999", None, 404),
        ("GET", "/jobs?limit=0", None, 400),
        ("GET", "/jobs?limit=1001", None, 400),
        ("GET", "/jobs?cursor=x", None, 400),
    ],
)
def test_bad_requests_are_refused_and_start_nothing(
    api: Client,
    services: Services,
    devices: list[str],
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    assert api(method, path, body).status_code == status
    assert job_rows(services) == []


def test_without_an_api_key_nothing_starts(
    api: Client, services: Services, devices: list[str]
) -> None:
    client = api.client
    assert client.post("/api/v1/groups/pilots/rotate").status_code == 401
    assert client.get("/api/v1/jobs/1").status_code == 401
    assert job_rows(services) == []
