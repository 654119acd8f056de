from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from device_agent.protocol.envelope import EnvelopeError
from fleet.mqtt import topics
from fleet.scheduler import FleetScheduler
from fleet.services import Services
from fleet.services.leadership import Leadership
from tests.services.devices.conftest import FakeDevice, broker, fleet, new_device, secret
from tests.support.fake_broker import FakeBroker

__all__ = ["broker", "fleet", "secret"]

SchedulerFactory = Callable[..., FleetScheduler]


@pytest.fixture
def make_scheduler() -> Iterator[SchedulerFactory]:
    """``make_scheduler(services, leadership=None)``: a scheduler stopped after the test.

    Stopping matters on PostgreSQL: the leader's advisory lock lives on a connection that
    outlives the test's engine, and would keep the next test's scheduler from leading.
    """
    made: list[FleetScheduler] = []

    def make(services: Services, leadership: Leadership | None = None) -> FleetScheduler:
        scheduler = FleetScheduler(services, leadership)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop()


@dataclass
class SimDevice:
    """A device that reads its retained topics when online, as the agent does."""

    fake: FakeDevice
    online: bool = True
    current: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    versions: dict[str, int] = field(default_factory=lambda: {"credentials": 0, "command": 0})
    accepted: list[int] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return self.fake.device_id

    def say(self, services: Services, **message: Any) -> None:
        services.delivery.handle_status(self.device_id, json.dumps(message).encode())

    def connect(self, services: Services) -> None:
        self.online = True
        self.say(services, type="hello", versions=self.versions)

    def sync(self, services: Services, broker: FakeBroker) -> None:
        if not self.online:
            return
        data = broker.retained.get(topics.credentials_topic(self.device_id))
        if not data:
            return
        try:
            opened = self.fake.open(services, data, last_version=self.versions["credentials"])
        except EnvelopeError:
            return  # nothing newer (or not for us)
        payload = opened.payload
        if services.registry_auth.authenticate(payload["username"], payload["password"]) is None:
            return  # never trust a password that does not work
        self.previous, self.current = self.current, payload
        self.versions["credentials"] = opened.version
        self.accepted.append(opened.version)
        self.say(
            services, type="ack", kind="credentials", version=opened.version, slot=payload["slot"]
        )

    def can_pull(self, services: Services) -> bool:
        return (
            self.current is not None
            and services.registry_auth.authenticate(
                self.current["username"], self.current["password"]
            )
            is not None
        )


def enroll_many(services: Services, secret: str, count: int) -> list[SimDevice]:
    sims = []
    for i in range(count):
        fake = new_device(f"sim-{i:04d}")
        services.devices.enroll(fake.device_id, secret, *fake.keys)
        sims.append(SimDevice(fake))
    return sims
