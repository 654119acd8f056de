"""Credential health: kept in memory on the hot path, written in batches, read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from fleet.services import Services
from fleet.services.health import (
    KIND_ADDRESS,
    KIND_TOKEN,
    NO_HEALTH,
    OVERFLOW_KEY,
    HealthRecorder,
    TokenHealthView,
    top_failures,
)
from tests.support.timing import wait_until

T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def wall() -> Clock:
    return Clock()


@pytest.fixture
def recorder(services: Services, wall: Clock) -> HealthRecorder:
    services.tokens.create(
        "pi-0001", scope_map="_repositories_pull", actor="test", generate_passwords=False
    )
    services.tokens.create(
        "pi-0002", scope_map="_repositories_pull", actor="test", generate_passwords=False
    )
    return HealthRecorder(services.ctx, clock=wall)


def _statements(services: Services) -> list[str]:
    seen: list[str] = []
    event.listen(services.ctx.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_nothing_is_written_until_a_flush(services: Services, recorder: HealthRecorder) -> None:
    seen = _statements(services)
    for n in range(1000):
        recorder.login_ok("pi-0001", f"192.0.2.{n % 250}")
        recorder.login_failed("pi-0002", "198.51.100.7")
    assert seen == []
    assert recorder.for_token("pi-0001") == NO_HEALTH
    recorder.flush()
    assert recorder.for_token("pi-0002").failed_logins == 1000


def test_the_last_login_and_failures_are_read_back(recorder: HealthRecorder, wall: Clock) -> None:
    recorder.login_ok("pi-0001", "192.0.2.1")
    wall.advance(10)
    recorder.login_failed("pi-0001", "198.51.100.9")
    recorder.login_ok("pi-0001", "192.0.2.2")
    assert recorder.flush() == 3  # one health row, two hourly buckets (name and address)
    assert recorder.for_token("pi-0001") == TokenHealthView(
        last_used_at=T0 + timedelta(seconds=10),
        last_used_address="192.0.2.2",
        failed_logins=1,
        last_failed_at=T0 + timedelta(seconds=10),
        last_failed_address="198.51.100.9",
    )


def test_counts_add_up_and_the_newest_time_wins_across_processes(
    services: Services, recorder: HealthRecorder, wall: Clock
) -> None:
    other = HealthRecorder(services.ctx, clock=wall)  # a second gunicorn worker
    recorder.login_failed("pi-0001", "198.51.100.1")
    recorder.login_ok("pi-0001", "192.0.2.1")
    wall.advance(60)
    other.login_failed("pi-0001", "198.51.100.2")
    other.login_ok("pi-0001", "192.0.2.2")
    other.flush()  # the newer one is written first ...
    recorder.flush()  # ... and the older batch must not overwrite it
    health = recorder.for_token("pi-0001")
    assert health.failed_logins == 2
    assert (health.last_used_at, health.last_used_address) == (
        T0 + timedelta(seconds=60),
        "192.0.2.2",
    )
    assert health.last_failed_address == "198.51.100.2"


def test_unknown_names_get_no_health_row_but_count_as_failures(
    services: Services, recorder: HealthRecorder, wall: Clock
) -> None:
    for name in ("nobody", "nobody", "pi-0002"):
        recorder.login_failed(name, "203.0.113.5")
    recorder.flush()
    with services.ctx.db.engine.connect() as conn:
        names = conn.execute(text("SELECT token_name FROM token_health")).scalars().all()
    assert names == ["pi-0002"]
    since = datetime.fromtimestamp(wall.now, UTC) - timedelta(hours=24)
    assert top_failures(services.ctx, KIND_TOKEN, since) == [("nobody", 2), ("pi-0002", 1)]
    assert top_failures(services.ctx, KIND_ADDRESS, since) == [("203.0.113.5", 3)]


def test_failures_are_bucketed_per_hour_and_the_top_looks_back_24_hours(
    services: Services, recorder: HealthRecorder, wall: Clock
) -> None:
    recorder.login_failed("pi-0001", "198.51.100.1")
    wall.advance(25 * 3600)
    recorder.login_failed("pi-0002", "198.51.100.1")
    recorder.login_failed("pi-0002", "198.51.100.2")
    recorder.flush()
    since = datetime.fromtimestamp(wall.now, UTC) - timedelta(hours=24)
    assert top_failures(services.ctx, KIND_TOKEN, since) == [("pi-0002", 2)]
    assert top_failures(services.ctx, KIND_ADDRESS, since, limit=1) == [("198.51.100.1", 1)]


def test_what_a_process_holds_is_bounded(services: Services, wall: Clock) -> None:
    small = HealthRecorder(services.ctx, clock=wall, max_keys=3)
    for n in range(10):
        small.login_failed(f"guess-{n}", f"203.0.113.{n}")
    tokens, failures = small.held()
    assert tokens <= 4 and failures <= 2 * 3 + 2
    small.flush()
    since = datetime.fromtimestamp(wall.now, UTC) - timedelta(hours=1)
    totals = dict(top_failures(services.ctx, KIND_TOKEN, since, limit=20))
    assert sum(totals.values()) == 10 and OVERFLOW_KEY in totals


def test_old_buckets_are_pruned(services: Services, recorder: HealthRecorder, wall: Clock) -> None:
    recorder.login_failed("pi-0001", "198.51.100.1")
    recorder.flush()
    wall.advance(9 * 24 * 3600)
    recorder.login_failed("pi-0001", "198.51.100.1")
    recorder.flush()
    with services.ctx.db.engine.connect() as conn:
        hours = conn.execute(text("SELECT DISTINCT hour FROM login_failures_hourly")).all()
    assert len(hours) == 1


def test_the_background_writer_flushes_by_itself_and_on_stop(services: Services) -> None:
    services.tokens.create(
        "pi-0003", scope_map="_repositories_pull", actor="test", generate_passwords=False
    )
    live = HealthRecorder(services.ctx, flush_interval_s=0.1)
    live.login_ok("pi-0003", "192.0.2.3")
    wait_until(lambda: live.for_token("pi-0003").last_used_address, "a flush by the writer")
    live.login_failed("pi-0003", "192.0.2.4")
    live.stop()
    assert live.for_token("pi-0003").failed_logins == 1
