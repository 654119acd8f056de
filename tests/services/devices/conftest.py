from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device_agent.protocol.envelope import Opened, open_envelope
from device_agent.protocol.keys import public_key_b64
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.support.fake_broker import FakeBroker


@dataclass
class FakeDevice:
    """A device's keys, and the way it opens what it is sent."""

    device_id: str
    x25519: X25519PrivateKey
    ed25519: Ed25519PrivateKey

    @property
    def keys(self) -> tuple[str, str]:
        return public_key_b64(self.x25519.public_key()), public_key_b64(self.ed25519.public_key())

    def open(self, services: Services, data: bytes, last_version: int = 0) -> Opened:
        return open_envelope(
            data,
            device_id=self.device_id,
            device_private_key=self.x25519,
            server_public_key=services.envelopes.envelope_key.public_key(),
            last_version=last_version,
        )


def new_device(device_id: str) -> FakeDevice:
    return FakeDevice(device_id, X25519PrivateKey.generate(), Ed25519PrivateKey.generate())


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def fleet(services: Services, broker: FakeBroker) -> Services:
    services.broker = broker
    services.scope_maps.create(
        "devices-read",
        [RepositoryActions("edge/*", ("content/read", "metadata/read"))],
        actor="test",
    )
    services.groups.create("pilots", scope_map="devices-read", actor="test")
    return services


@pytest.fixture
def secret(fleet: Services) -> str:
    return fleet.groups.create_secret("pilots", actor="test").value or ""


def status(services: Services, device_id: str, **message: object) -> None:
    services.delivery.handle_status(device_id, json.dumps(message).encode())
