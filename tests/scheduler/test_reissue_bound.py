"""A device's refusals mint at most ``reissue_limit`` passwords per window, counted in the
database, so the bound holds across workers, servers and restarts (issue 12, defect 7)."""

from __future__ import annotations

import json
import threading

from sqlmodel import col, func, select

from fleet.bootstrap import initialise
from fleet.db.devices import Delivery, Device
from fleet.db.models import AuditEvent
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device
from tests.support.timing import scaled

LIMIT = 3
WINDOW_S = 600
THREADS = 6


def newest(services: Services, device_id: str) -> int:
    with services.ctx.db.session() as s:
        device = s.exec(select(Device).where(Device.device_id == device_id)).one()
        return device.last_version


def reject_newest(services: Services, device_id: str) -> None:
    message = {
        "type": "reject",
        "kind": "credentials",
        "version": newest(services, device_id),
        "reason": "CredentialsRefused",
    }
    services.delivery.handle_status(device_id, json.dumps(message).encode())


def minted(services: Services, device_id: str) -> int:
    with services.ctx.db.session() as s:
        count: int = s.exec(
            select(func.count())
            .select_from(Delivery)
            .join(Device, col(Device.id) == col(Delivery.device_pk))
            .where(Device.device_id == device_id, Delivery.kind == "credentials")
        ).one()
        return count


def audited(services: Services, device_id: str, action: str) -> int:
    with services.ctx.db.session() as s:
        count: int = s.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.target == device_id, AuditEvent.action == action)
        ).one()
        return count


def bounded_fleet(make_services, broker) -> Services:  # type: ignore[no-untyped-def]
    fleet: Services = make_services(reissue_limit=LIMIT, reissue_window_seconds=WINDOW_S)
    fleet.broker = broker
    fleet.scope_maps.create(
        "devices-read", [RepositoryActions("edge/*", ("content/read",))], actor="t"
    )
    fleet.groups.create("pilots", scope_map="devices-read", actor="t")
    secret = fleet.groups.create_secret("pilots", actor="t").value or ""
    fake = new_device("loop-0001")
    fleet.devices.enroll(fake.device_id, secret, *fake.keys)
    return fleet


def test_refusals_mint_at_most_the_limit_per_window_then_again_after_it(
    make_services, broker, clock: FakeClock
) -> None:  # type: ignore[no-untyped-def]
    fleet = bounded_fleet(make_services, broker)
    assert minted(fleet, "loop-0001") == 1  # the enrollment's delivery counts
    for _ in range(50):
        reject_newest(fleet, "loop-0001")
    assert minted(fleet, "loop-0001") == LIMIT
    assert audited(fleet, "loop-0001", "device.envelope.reject") == LIMIT - 1
    assert audited(fleet, "loop-0001", "device.reissue.limited") == 1  # once per window
    stuck = newest(fleet, "loop-0001")

    clock.advance(seconds=WINDOW_S / 2)  # still inside the window: nothing more
    reject_newest(fleet, "loop-0001")
    assert newest(fleet, "loop-0001") == stuck

    clock.advance(seconds=WINDOW_S / 2 + 1)  # the window has passed: served again
    reject_newest(fleet, "loop-0001")
    assert newest(fleet, "loop-0001") == stuck + 1
    assert minted(fleet, "loop-0001") == LIMIT + 1
    for _ in range(20):
        reject_newest(fleet, "loop-0001")
    assert minted(fleet, "loop-0001") == 2 * LIMIT
    assert audited(fleet, "loop-0001", "device.reissue.limited") == 2


def test_the_bound_holds_across_servers_handling_one_device_at_once(
    make_services, settings_factory, broker, clock: FakeClock
) -> None:  # type: ignore[no-untyped-def]
    """Several servers share the status stream: ``THREADS`` of them (each its own services,
    engine and connections, on the same database) handle the same device's refusals at once."""
    fleet = bounded_fleet(make_services, broker)
    servers = [fleet]
    for _ in range(THREADS - 1):
        other = initialise(settings_factory(reissue_limit=LIMIT, reissue_window_seconds=WINDOW_S))
        other.ctx.clock, other.broker = clock, broker
        servers.append(other)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def server(services: Services) -> None:
        barrier.wait(scaled(30))
        for _ in range(10):
            try:
                reject_newest(services, "loop-0001")
            except Exception as exc:  # a lost race on the row (in production: logged)
                errors.append(exc)

    threads = [threading.Thread(target=server, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(120))
    for other in servers[1:]:
        other.close()
    assert minted(fleet, "loop-0001") == LIMIT
    assert audited(fleet, "loop-0001", "device.reissue.limited") == 1
    clock.advance(seconds=WINDOW_S + 1)
    reject_newest(fleet, "loop-0001")
    assert minted(fleet, "loop-0001") == LIMIT + 1
