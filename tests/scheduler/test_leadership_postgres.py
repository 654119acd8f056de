"""Two schedulers on one PostgreSQL, as two servers would run them: one leads at a time.

Each scheduler has its own :class:`Services` (its own engine and connection pool) and its own
advisory lock connection, and each runs its passes on a thread of its own, as APScheduler
would. Leadership is handed over while passes run; what counts is that passes never overlap
and that every device is rotated exactly as often as its expiry asks, never twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from sqlmodel import col, func, select

from fleet.bootstrap import initialise
from fleet.config import Settings
from fleet.db.devices import Delivery
from fleet.db.models import SchedulerRun
from fleet.scheduler import FleetScheduler
from fleet.services import Services
from fleet.services.reconciler import PassSummary
from tests.conftest import FakeClock
from tests.scheduler.conftest import SchedulerFactory, enroll_many
from tests.support.fake_broker import FakeBroker
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.postgres

DEVICES = 40
DAYS = 50  # 30-day passwords rotated 7 days before expiry: rotations on days 23 and 46
ROTATIONS_EACH = 2
PASS_S = 0.02  # each pass lingers this long, so a second one would have time to overlap
HANDOVERS = 4


@pytest.fixture
def db_url(postgres_schema_url: str) -> str:
    return postgres_schema_url


@pytest.fixture
def second_server(
    fleet: Services, broker: FakeBroker, clock: FakeClock, settings_factory: Callable[[], Settings]
) -> Iterator[Services]:
    """Another server on the same database: same settings and keys, its own engine."""
    other = initialise(settings_factory())
    other.ctx.clock = clock
    other.broker = broker
    yield other
    other.close()


@dataclass
class Overlap:
    """Counts the passes running at once, across both schedulers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    most: int = 0
    passes: Counter[str] = field(default_factory=Counter)

    def watch(self, name: str, scheduler: FleetScheduler, linger_s: float) -> None:
        real = scheduler.reconciler.run_pass

        def run_pass() -> PassSummary:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                self.passes[name] += 1
            try:
                time.sleep(linger_s)
                return real()
            finally:
                with self.lock:
                    self.running -= 1

        scheduler.reconciler.run_pass = run_pass  # type: ignore[method-assign]


@dataclass
class Ticker:
    """A scheduler's job thread: a pass after another until told to stop."""

    name: str
    scheduler: FleetScheduler
    paused: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    led: int = 0

    def run(self) -> None:
        while not self.done.is_set():
            if self.paused.is_set():
                time.sleep(0.005)
                continue
            try:
                if self.scheduler.tick() is not None:
                    self.led += 1
            except Exception as exc:  # a failed pass is a finding, not a crash of the test
                self.errors.append(exc)


def _credential_deliveries(services: Services) -> Counter[int]:
    with services.ctx.db.session() as s:
        rows = s.exec(select(Delivery.device_pk).where(Delivery.kind == "credentials")).all()
    return Counter(rows)


def test_two_servers_hand_leadership_over_and_never_rotate_twice(
    make_scheduler: SchedulerFactory,
    fleet: Services,
    second_server: Services,
    secret: str,
    clock: FakeClock,
) -> None:
    enroll_many(fleet, secret, DEVICES)
    overlap = Overlap()
    tickers = [
        Ticker("one", make_scheduler(fleet)),
        Ticker("two", make_scheduler(second_server)),
    ]
    for ticker in tickers:
        overlap.watch(ticker.name, ticker.scheduler, scaled(PASS_S))
    threads = [threading.Thread(target=t.run, name=t.name, daemon=True) for t in tickers]
    for thread in threads:
        thread.start()
    handover_days = {DAYS * (i + 1) // (HANDOVERS + 1) for i in range(HANDOVERS)}
    try:
        for day in range(1, DAYS + 1):
            clock.advance(days=1)
            before = sum(overlap.passes.values())
            # at least one whole pass sees this day (one that started after the clock moved)
            wait_until(lambda b=before: sum(overlap.passes.values()) >= b + 2, f"a pass on {day}")
            if day in handover_days:
                leader = max(tickers, key=lambda t: t.led)
                follower = next(t for t in tickers if t is not leader)
                leader.paused.set()
                leader.scheduler.stop()  # a server shutting down, maybe in the middle of a pass
                led_before = follower.led
                wait_until(lambda f=follower, n=led_before: f.led > n, "the other server leads")
                leader.paused.clear()
                for ticker in tickers:
                    ticker.led = 0
    finally:
        for ticker in tickers:
            ticker.done.set()
        for thread in threads:
            thread.join(scaled(10))
    assert [t.errors for t in tickers] == [[], []]
    assert overlap.most == 1, "two passes ran at the same time"
    assert set(overlap.passes) == {"one", "two"}, overlap.passes
    # enrollment, then days 23 and 46: three credentials each, not one more
    assert set(_credential_deliveries(fleet).values()) == {1 + ROTATIONS_EACH}
    with fleet.ctx.db.session() as s:
        runs = s.exec(select(SchedulerRun)).all()
        unfinished = s.exec(
            select(func.count())
            .select_from(SchedulerRun)
            .where(col(SchedulerRun.finished_at).is_(None))
        ).one()
    assert unfinished == 0
    rotated = sum(PassSummary(**json.loads(r.summary)).rotated for r in runs)
    assert rotated == DEVICES * ROTATIONS_EACH


def test_stopping_the_leader_mid_pass_keeps_the_lock_until_the_pass_ends(
    make_scheduler: SchedulerFactory, fleet: Services, second_server: Services
) -> None:
    leader, other = make_scheduler(fleet), make_scheduler(second_server)
    in_pass, finish = threading.Event(), threading.Event()
    real = leader.reconciler.run_pass

    def slow_pass() -> PassSummary:
        in_pass.set()
        finish.wait(scaled(10))
        return real()

    leader.reconciler.run_pass = slow_pass  # type: ignore[method-assign]
    ticking = threading.Thread(target=leader.tick, daemon=True)
    ticking.start()
    assert in_pass.wait(scaled(10))
    stopping = threading.Thread(target=leader.stop, daemon=True)
    stopping.start()
    stopping.join(0.2)  # stop() waits for the running pass...
    assert other.tick() is None  # ...and until it ends nobody else may start one
    finish.set()
    ticking.join(scaled(10))
    stopping.join(scaled(10))
    assert not stopping.is_alive()
    assert other.tick() is not None  # released once the pass was over


# The backend holding this schema's scheduler lock (a bigint key: objid is its low 32 bits).
_LOCK_HOLDER = text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND objid = (hashtext('fleet-scheduler:' || current_schema())::bigint & 4294967295)::oid "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_a_leader_whose_lock_connection_dies_is_replaced(
    make_scheduler: SchedulerFactory, fleet: Services, second_server: Services
) -> None:
    leader, other = make_scheduler(fleet), make_scheduler(second_server)
    assert leader.tick() is not None
    assert other.tick() is None
    with fleet.ctx.db.engine.connect() as conn:
        (holder,) = conn.execute(_LOCK_HOLDER).scalars().all()
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
    wait_until(lambda: other.tick() is not None, "the other server took the lock over")
    assert leader.tick() is None  # it noticed its connection was gone, and the lock with it
    with fleet.ctx.db.engine.connect() as conn:
        assert len(conn.execute(_LOCK_HOLDER).scalars().all()) == 1
