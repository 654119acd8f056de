"""The whole delivery path for real: fleet serve + mosquitto (dynamic security) + Distribution."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.registry import Registry

SERVICE = "delivery-registry"
ISSUER = "fleet-delivery"


@dataclass
class Parts:
    broker: Mosquitto
    server: FleetServer
    registry: Registry
    secret: str


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    broker = Mosquitto().start()
    registry_port = free_port()
    server_dir: Path = tmp_path_factory.mktemp("fleet")
    env = {
        "FLEET_REGISTRY_SERVICE": SERVICE,
        "FLEET_TOKEN_ISSUER": ISSUER,
        **broker.fleet_env(),
        "FLEET_REGISTRY_LOGIN_SERVER": f"127.0.0.1:{registry_port}",
        "FLEET_SCHEDULER_ENABLED": "false",
    }
    server = FleetServer(server_dir, env=env)
    try:
        with (
            server,
            Registry(
                realm=server.realm,
                service=SERVICE,
                issuer=ISSUER,
                rootcertbundle=server.bundle,
                directory=tmp_path_factory.mktemp("registry"),
                port=registry_port,
            ) as registry,
        ):
            secret = server.device_group("pilots")
            yield Parts(broker, server, registry, secret)
    finally:
        broker.stop()
        broker.cleanup()
