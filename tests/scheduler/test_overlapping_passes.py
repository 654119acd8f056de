"""Two reconciler passes at once (a leader that lost its lock's connection mid-pass while
another server took over) rotate each due device once, on SQLite and on PostgreSQL.

The due devices are read before their rows are locked; the rotation checks again under the
lock that each is still due, so the pass that comes second finds them rotated and leaves them.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

from sqlmodel import col, select

from fleet.db.devices import Delivery
from fleet.services import Services
from tests.conftest import FakeClock
from tests.scheduler.conftest import enroll_many
from tests.support.fake_broker import FakeBroker


def credential_deliveries(services: Services) -> Counter[int]:
    with services.ctx.db.session() as s:
        rows = s.exec(select(Delivery.device_pk).where(col(Delivery.kind) == "credentials")).all()
    return Counter(int(pk) for pk in rows)


def due_now(services: Services, now: datetime) -> list[int]:
    return [pk for pk, _ in services.reconciler._due_rotation(now, set())]


def test_a_pass_acting_on_a_stale_selection_rotates_nobody_again(
    fleet: Services, broker: FakeBroker, secret: str, clock: FakeClock
) -> None:
    sims = enroll_many(fleet, secret, 6)
    for sim in sims:
        sim.sync(fleet, broker)
    clock.advance(days=23)
    first = due_now(fleet, clock())
    second = due_now(fleet, clock())  # the other server read the same rows before either acted
    assert sorted(first) == sorted(second) and len(first) == len(sims)
    fleet.reconciler._rotate(first)
    fleet.reconciler._rotate(second)
    assert set(credential_deliveries(fleet).values()) == {2}  # enrollment's, and one rotation


def test_two_passes_in_two_threads_rotate_each_device_once(
    fleet: Services, broker: FakeBroker, secret: str, clock: FakeClock
) -> None:
    sims = enroll_many(fleet, secret, 20)
    for sim in sims:
        sim.sync(fleet, broker)
    clock.advance(days=23)
    selected = due_now(fleet, clock())
    assert len(selected) == len(sims)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_pass() -> None:
        start.wait()
        try:
            fleet.reconciler._rotate(selected)
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert set(credential_deliveries(fleet).values()) == {2}
    assert due_now(fleet, clock()) == []
