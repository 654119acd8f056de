"""The expiry-warning webhook is sent from an outbox, off the reconciler pass (issue 12, 16).

Every endpoint here is a real local HTTP server (or a port that never answers); the services'
clock is a FakeClock, so backoff and age are moved by hand rather than waited for.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import col, select
from werkzeug.serving import make_server

from fleet.app import create_app
from fleet.cli import cli
from fleet.db.models import AuditEvent, WebhookOutbox
from fleet.domain.errors import ValidationError
from fleet.domain.rules import RepositoryActions
from fleet.scheduler import FleetScheduler
from fleet.services import Services, outbox
from fleet.services.outbox import BACKOFF_CAP_S, GAVE_UP, WebhookSender, backoff
from tests.conftest import FakeClock, make_settings
from tests.scheduler.conftest import SchedulerFactory, enroll_many
from tests.scheduler.webhook_server import Recorder, hung_endpoint, recording_endpoint
from tests.support.fake_broker import FakeBroker
from tests.support.ports import free_port
from tests.support.timing import scaled, wait_until

MakeServices = Callable[..., Services]
EXPIRING = "device.credentials.expiring"


def fleet_with(make_services: MakeServices, broker: FakeBroker, **overrides: Any) -> Services:
    """A fleet like tests/services/devices' ``fleet``, with settings of this test's own."""
    services = make_services(**overrides)
    services.broker = broker
    services.scope_maps.create(
        "devices-read", [RepositoryActions("edge/*", ("content/read", "metadata/read"))], actor="t"
    )
    services.groups.create("pilots", scope_map="devices-read", actor="t")
    return services


def warn(
    services: Services, scheduler: FleetScheduler, clock: FakeClock, devices: int = 1
) -> tuple[float, int]:
    """Devices that never acknowledge their rotation reach their warning; the warning pass's
    wall time and its count of warnings."""
    secret = services.groups.create_secret("pilots", actor="t").value or ""
    assert isinstance(services.broker, FakeBroker)
    for sim in enroll_many(services, secret, devices):
        sim.sync(services, services.broker)  # the first password acknowledged
        sim.online = False
    clock.advance(days=23)
    scheduler.tick()  # the rotation, never acknowledged
    clock.advance(days=4)
    started = time.monotonic()
    summary = scheduler.tick()  # 3 days before expiry: the warnings
    elapsed = time.monotonic() - started
    assert summary is not None, "this scheduler does not lead"
    return elapsed, summary.warnings


def rows(services: Services) -> list[WebhookOutbox]:
    with services.ctx.db.session() as s:
        return list(s.exec(select(WebhookOutbox).order_by(col(WebhookOutbox.id))).all())


def audits(services: Services, action: str) -> list[AuditEvent]:
    with services.ctx.db.session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_webhook_that_never_answers_does_not_delay_the_pass(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    broker: FakeBroker,
    clock: FakeClock,
) -> None:
    devices = 3
    plain = fleet_with(make_services, broker)
    first = make_scheduler(plain)
    baseline, warned = warn(plain, first, clock, devices)
    assert warned == devices
    first.stop()  # the next one leads
    with hung_endpoint() as url:
        hooked = fleet_with(
            make_services, broker, warning_webhook_url=url, webhook_timeout_seconds=1
        )
        scheduler = make_scheduler(hooked)
        elapsed, warned = warn(hooked, scheduler, clock, devices)
        assert warned == devices
        # The pass only wrote the events: it costs what a pass without a webhook costs (the
        # inline call waited out its timeout once per warning).
        assert elapsed < 3 * baseline + scaled(0.5), (elapsed, baseline)
        queued = rows(hooked)
        assert len(queued) == devices and all(r.next_attempt_at for r in queued)
        bodies = [json.loads(r.body) for r in queued]
        assert sorted(b["deviceId"] for b in bodies) == [f"sim-{i:04d}" for i in range(devices)]
        assert {b["eventId"] for b in bodies} == {r.event_id for r in queued}
        # One audit row per event, written together.
        assert sorted(a.target for a in audits(hooked, EXPIRING)) == sorted(
            b["deviceId"] for b in bodies
        )
        # The sender, off the pass, waits out its short timeout and keeps the error.
        assert scheduler.send_outbox() == 0
        after = rows(hooked)
        assert [r.attempts for r in after] == [1] * devices
        assert all("Timeout" in (r.last_error or "") for r in after)


def test_failed_sends_back_off_and_the_event_arrives_once_when_the_endpoint_is_back(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    broker: FakeBroker,
    clock: FakeClock,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    fleet = fleet_with(make_services, broker, warning_webhook_url=url)
    scheduler = make_scheduler(fleet)
    warn(fleet, scheduler, clock)

    assert scheduler.send_outbox() == 0  # refused
    (row,) = rows(fleet)
    assert row.attempts == 1 and row.sent_at is None and "Connection" in (row.last_error or "")
    assert row.next_attempt_at is not None
    assert timedelta(seconds=5) <= row.next_attempt_at - clock() <= timedelta(seconds=10)
    assert scheduler.send_outbox() == 0  # not due yet: not tried
    assert rows(fleet)[0].attempts == 1

    clock.advance(seconds=10)
    assert scheduler.send_outbox() == 0
    (row,) = rows(fleet)
    assert row.attempts == 2 and row.next_attempt_at is not None
    assert timedelta(seconds=10) <= row.next_attempt_at - clock() <= timedelta(seconds=20)

    recorder = Recorder()
    with recording_endpoint(port, recorder):
        clock.advance(seconds=20)
        assert scheduler.send_outbox() == 1
        for _ in range(3):
            clock.advance(hours=2)
            scheduler.tick()  # no second warning either
            assert scheduler.send_outbox() == 0
    (got,) = recorder.received
    assert got.headers["X-Fleet-Event-Id"] == got.headers["Idempotency-Key"] == row.event_id
    assert got.body["eventId"] == row.event_id
    assert got.body["event"] == EXPIRING and got.body["deviceId"] == "sim-0000"
    (row,) = rows(fleet)
    assert row.sent_at is not None and row.next_attempt_at is None and row.attempts == 3
    state = scheduler.sender.status()
    assert state.pending == 0 and state.oldest_pending_seconds is None
    assert state.last_error and "Connection" in state.last_error


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 5, 10), (2, 10, 20), (3, 20, 40), (8, 640, 1280), (10, 1800, 3600), (40, 1800, 3600)],
)
def test_backoff_doubles_from_10_s_to_an_hour_with_jitter(
    attempts: int, low: float, high: float
) -> None:
    rng = random.Random(attempts)
    waits = [backoff(attempts, rng).total_seconds() for _ in range(200)]
    assert all(low <= w <= high for w in waits)
    assert len(set(waits)) > 100  # jittered, not one value
    assert max(waits) <= BACKOFF_CAP_S


def test_an_event_is_given_up_after_the_bounded_number_of_tries(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    broker: FakeBroker,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(status=500)
    with recording_endpoint(free_port(), recorder) as url:
        fleet = fleet_with(make_services, broker, warning_webhook_url=url, webhook_max_attempts=3)
        scheduler = make_scheduler(fleet)
        warn(fleet, scheduler, clock)
        with caplog.at_level(logging.WARNING, logger="fleet.services.outbox"):
            for _ in range(5):
                scheduler.send_outbox()
                clock.advance(seconds=BACKOFF_CAP_S)
    assert len(recorder.received) == 3
    assert len(set(recorder.event_ids())) == 1
    (row,) = rows(fleet)
    assert row.gave_up_at is not None and row.next_attempt_at is None and row.attempts == 3
    assert row.last_error == "WebhookRefused: HTTP 500 Internal Server Error"
    (gave_up,) = audits(fleet, GAVE_UP)
    assert json.loads(gave_up.detail)["eventId"] == row.event_id
    assert any("given up after 3 tries" in r.getMessage() for r in caplog.records)
    state = scheduler.sender.status()
    assert state.pending == 0 and state.given_up == 1


def test_the_outbox_is_bounded_by_age_rows_and_retention(
    make_services: MakeServices, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    port = free_port()
    fleet = make_services(
        warning_webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_max_age_hours=2,
        webhook_outbox_max_rows=10,
        webhook_sent_retention_hours=24,
    )
    sender = WebhookSender(fleet.ctx)
    with fleet.ctx.db.session() as s:
        old = outbox.enqueue(s, fleet.ctx, {"event": "old"})
    clock.advance(hours=1)
    with fleet.ctx.db.session() as s:
        fresh = [outbox.enqueue(s, fleet.ctx, {"event": f"e{i}"}) for i in range(14)]
    with caplog.at_level(logging.WARNING, logger="fleet.services.outbox"):
        sender.prune()  # 15 waiting, 10 allowed: the 5 oldest go
        assert {r.event_id for r in rows(fleet)} == set(fresh[4:])
        assert old not in {r.event_id for r in rows(fleet)}
        assert any("dropped the 5 oldest" in r.getMessage() for r in caplog.records)

        clock.advance(hours=2, seconds=1)  # the rest are now older than 2 h
        sender.prune()
        assert all(r.gave_up_at and r.next_attempt_at is None for r in rows(fleet))
        assert any("gave up 10 unsent" in r.getMessage() for r in caplog.records)

    with fleet.ctx.db.session() as s:
        sent = outbox.enqueue(s, fleet.ctx, {"event": "sent"})
    with recording_endpoint(port, recorder):
        assert sender.run() == 1
    assert recorder.event_ids() == [sent]
    clock.advance(hours=23)
    sender.prune()
    assert len(rows(fleet)) == 11  # given up and sent rows are kept a day
    clock.advance(hours=1, seconds=1)
    sender.prune()
    assert rows(fleet) == []


def test_a_warning_whose_transaction_fails_queues_nothing(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    broker: FakeBroker,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = fleet_with(make_services, broker, warning_webhook_url="http://127.0.0.1:9/hook")
    scheduler = make_scheduler(fleet)
    real_enqueue = outbox.enqueue

    def enqueue_then_fail(*args: Any) -> str | None:
        real_enqueue(*args)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(outbox, "enqueue", enqueue_then_fail)
    _, warned = warn(fleet, scheduler, clock)
    assert warned == 0 and rows(fleet) == [] and audits(fleet, EXPIRING) == []
    monkeypatch.setattr(outbox, "enqueue", real_enqueue)
    summary = scheduler.tick()  # tried again on the next pass, once
    assert summary is not None and summary.warnings == 1
    assert len(rows(fleet)) == 1 and len(audits(fleet, EXPIRING)) == 1


class NeverLeads:
    def acquire(self) -> bool:
        return False

    def release(self) -> None:
        return None


def test_only_the_leader_sends(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
) -> None:
    recorder = Recorder()
    with recording_endpoint(free_port(), recorder) as url:
        fleet = make_services(warning_webhook_url=url)
        with fleet.ctx.db.session() as s:
            outbox.enqueue(s, fleet.ctx, {"event": "x"})
        assert make_scheduler(fleet, NeverLeads()).send_outbox() is None
        assert recorder.received == []
        assert make_scheduler(fleet).send_outbox() == 1
    assert len(recorder.received) == 1


def test_two_senders_at_once_never_send_one_event_twice(
    make_services: MakeServices, clock: FakeClock
) -> None:
    events = 240
    recorder = Recorder()
    with recording_endpoint(free_port(), recorder) as url:
        # Two servers' worth of services (engines, sessions) on one database.
        first = make_services(warning_webhook_url=url)
        second = make_services(warning_webhook_url=url)
        with first.ctx.db.session() as s:
            queued = {outbox.enqueue(s, first.ctx, {"event": "x", "n": n}) for n in range(events)}
        senders = [WebhookSender(first.ctx), WebhookSender(second.ctx)]
        barrier = threading.Barrier(len(senders))
        sent: list[int] = [0, 0]
        errors: list[BaseException] = []

        def drain(i: int) -> None:
            try:
                barrier.wait(timeout=scaled(10))
                for _ in range(events):
                    done, claimed = senders[i].send_due()
                    sent[i] += done
                    if not claimed:
                        return
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(senders))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=scaled(120))
    assert errors == []
    counts = Counter(recorder.event_ids())
    assert set(counts) == queued and set(counts.values()) == {1}, counts.most_common(3)
    assert sum(sent) == events, sent
    assert all(sent), f"both senders should have taken part: {sent}"
    assert all(r.sent_at is not None for r in rows(first))


def test_scheduler_status_shows_the_outbox(
    make_services: MakeServices,
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
) -> None:
    fleet = make_services(warning_webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    app = create_app(fleet.ctx.settings, fleet)
    _, key = fleet.api_keys.create("ops", actor="t")
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/scheduler", headers=auth).get_json()["outbox"] == {
        "webhookConfigured": True,
        "pending": 0,
        "oldestPendingSeconds": None,
        "givenUp": 0,
        "lastError": None,
        "lastErrorAt": None,
    }
    with fleet.ctx.db.session() as s:
        outbox.enqueue(s, fleet.ctx, {"event": "x"})
    make_scheduler(fleet).send_outbox()  # refused
    clock.advance(seconds=90)
    body = client.get("/api/v1/scheduler", headers=auth).get_json()["outbox"]
    assert body["pending"] == 1 and body["oldestPendingSeconds"] == 90
    assert body["givenUp"] == 0 and "Connection" in body["lastError"]
    assert body["lastErrorAt"] == (clock() - timedelta(seconds=90)).isoformat()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook_timeout_seconds", 0),
        ("webhook_timeout_seconds", 31),
        ("webhook_interval_seconds", 0),
        ("webhook_max_attempts", 0),
        ("webhook_max_attempts", 10**9),
        ("webhook_max_age_hours", 99999999999),
        ("webhook_outbox_max_rows", 1),
        ("webhook_sent_retention_hours", 0),
    ],
)
def test_the_outbox_settings_are_bounded(tmp_path: Path, name: str, value: int) -> None:
    with pytest.raises(ValidationError, match=f"FLEET_{name.upper()}={value} is outside"):
        make_settings(tmp_path, **{name: value})


def test_the_started_scheduler_sends_from_a_job_of_its_own(
    make_services: MakeServices, make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    recorder = Recorder()
    with recording_endpoint(free_port(), recorder) as url:
        fleet = make_services(warning_webhook_url=url, webhook_interval_seconds=1)
        with fleet.ctx.db.session() as s:
            event_id = outbox.enqueue(s, fleet.ctx, {"event": "x"})
        scheduler = make_scheduler(fleet)
        scheduler.start()
        wait_until(recorder.event_ids, "the outbox job sent the event")
        scheduler.stop()
    assert recorder.event_ids() == [event_id]
    assert rows(fleet)[0].sent_at is not None


def test_fleet_scheduler_status_shows_the_outbox(
    make_services: MakeServices, make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    fleet = make_services(warning_webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    with fleet.ctx.db.session() as s:
        outbox.enqueue(s, fleet.ctx, {"event": "x"})
    make_scheduler(fleet).send_outbox()  # refused
    clock.advance(seconds=42)
    server = make_server("127.0.0.1", 0, create_app(fleet.ctx.settings, fleet), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _, key = fleet.api_keys.create("ops", actor="t")
    env = {"FLEET_URL": f"http://127.0.0.1:{server.server_port}", "FLEET_API_KEY": key}
    try:
        table = CliRunner().invoke(cli, ["scheduler", "status", "--output", "table"], env=env)
        shown = CliRunner().invoke(cli, ["scheduler", "status", "--query", "outbox"], env=env)
    finally:
        server.shutdown()
        thread.join(scaled(5))
    assert table.exit_code == 0, table.output
    header, _, row = table.stdout.strip().splitlines()[-3:]
    assert header.split()[:2] == ["WEBHOOK", "PENDING"] and row.split()[:3] == ["true", "1", "42.0"]
    assert "ConnectionError" in row
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["pending"] == 1
