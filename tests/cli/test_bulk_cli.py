"""``fleet device rotate|disable --group G`` and ``fleet job ...`` (fleet/cli/bulk.py) against
a live server on each database: the job followed with a progress bar on a terminal, plain
lines otherwise, a summary, and exit 1 when a device failed."""

from __future__ import annotations

import json
from typing import Any

import pytest

import fleet.cli.bulk as job_cli
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.cli.conftest import Fleet
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker

DEVICES = 5


@pytest.fixture
def broker(services: Services) -> FakeBroker:
    made = FakeBroker()
    services.broker = made
    services.scope_maps.create(
        "edge-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    services.groups.create("pilots", scope_map="edge-read", actor="t")
    secret = services.groups.create_secret("pilots", actor="t").value or ""
    for i in range(DEVICES):
        device_id = f"rpi-{i:03d}"
        services.devices.enroll(device_id, secret, *new_device(device_id).keys)
    return made


def test_rotate_a_group_off_a_terminal_prints_progress_lines_and_a_summary(
    fleet: Fleet, broker: FakeBroker
) -> None:
    result = fleet.run("device", "rotate", "--group", "pilots", "--now")
    assert result.exit_code == 0, result.stderr
    job = json.loads(result.stdout)
    assert (job["state"], job["done"], job["failed"]) == ("done", DEVICES, 0)
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr
    assert f"rotate pilots: {DEVICES}/{DEVICES} done, 0 failed" in lines
    assert lines[-1] == (
        f"rotate pilots (job {job['id']}) done: {DEVICES} rotated, 0 skipped, 0 failed of {DEVICES}"
    )


def test_on_a_terminal_a_progress_bar_is_drawn_in_place(
    fleet: Fleet, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_cli, "on_terminal", lambda: True)
    result = fleet.run("device", "disable", "--group", "pilots", "-o", "table")
    assert result.exit_code == 0, result.stderr
    assert "\r[" + "#" * job_cli.BAR_WIDTH + "] 100% disable pilots: 5/5 done" in result.stderr
    assert "done" in result.stdout.splitlines()[2]  # the table's row


def test_a_device_failing_exits_1_and_names_it(fleet: Fleet, broker: FakeBroker) -> None:
    broker.down = True  # each broker login refused: the devices count as failed
    result = fleet.run("device", "disable", "--group", "pilots", "--reason", "stolen")
    assert result.exit_code == 1
    job = json.loads(result.stdout)
    assert (job["failed"], job["reason"]) == (DEVICES, "stolen")
    assert "  rpi-000: registry token disabled, but the broker login is not" in result.stderr
    assert f"{DEVICES} failed of {DEVICES}" in result.stderr


def test_no_wait_prints_the_job_and_job_show_follows_it_later(
    fleet: Fleet, broker: FakeBroker
) -> None:
    started = fleet.run("device", "rotate", "--group", "pilots", "--now", "--no-wait")
    assert started.exit_code == 0
    job = json.loads(started.stdout)
    if job["state"] != "done":  # it may have ended already
        assert f"fleet job show --id {job['id']} --wait" in started.stderr
    followed = fleet.run("job", "show", "--id", str(job["id"]), "--wait")
    assert followed.exit_code == 0
    assert json.loads(followed.stdout)["state"] == "done"
    listed = fleet.json("job", "list", "--top", "1")
    assert [j["id"] for j in listed] == [job["id"]]


def test_a_second_job_while_one_runs_is_refused(
    fleet: Fleet, broker: FakeBroker, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.jobs, "run_in_background", lambda job_id: None)
    fleet.ok("device", "rotate", "--group", "pilots", "--now", "--no-wait")
    second = fleet.run("device", "rotate", "--group", "pilots", "--now")
    assert second.exit_code == 1
    assert "JobRunning, HTTP 409" in second.stderr and "job 1" in second.stderr
    assert "`fleet job show --id N --wait`" in second.stderr  # the CLI's own advice


@pytest.mark.parametrize(
    "args",
    [
        ["device", "rotate", "--now"],
        ["device", "rotate", "--now", "--name", "rpi-000", "--group", "pilots"],
        ["device", "disable"],
        ["device", "disable", "--name", "rpi-000", "--reason", "x"],
    ],
)
def test_name_or_group_exactly_one(fleet: Fleet, broker: FakeBroker, args: list[str]) -> None:
    result = fleet.run(*args)
    assert result.exit_code == 2
    assert "--name" in result.stderr or "--reason" in result.stderr


def test_one_device_still_works_by_name(fleet: Fleet, broker: FakeBroker) -> None:
    assert fleet.json("device", "rotate", "--name", "rpi-001", "--now")["deviceId"] == "rpi-001"
    assert fleet.json("device", "disable", "--name", "rpi-001")["status"] == "disabled"


def _job(done: int, failed: int = 0, state: str = "running") -> dict[str, Any]:
    return {
        "id": 1,
        "kind": "rotate",
        "group": "g",
        "state": state,
        "total": 100,
        "done": done,
        "skipped": 0,
        "failed": failed,
    }


def test_progress_lines_when_the_counts_move_at_most_every_two_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]
    answers = iter([_job(10), _job(10), _job(20), _job(30), _job(40, 1), _job(99, 1, "done")])

    def sleep(seconds: float) -> None:
        now[0] += 1.0  # each poll a second apart

    end = job_cli.follow(
        lambda: next(answers), _job(0), terminal=False, sleep=sleep, clock=lambda: now[0]
    )
    assert end["state"] == "done"
    assert capsys.readouterr().err.splitlines() == [
        "rotate g: 0/100 done, 0 failed",  # at once
        "rotate g: 10/100 done, 0 failed",  # 2 s later (not at 1 s: too soon)
        "rotate g: 30/100 done, 0 failed",  # 2 s later again (not 20 at 3 s)
        "rotate g: 99/100 done, 1 failed",  # the end, whenever it comes
    ]
