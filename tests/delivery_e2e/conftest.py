"""The whole delivery path for real: fleet serve + mosquitto (dynamic security) + Distribution,
once with the server on SQLite and once on a fresh PostgreSQL schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.postgres import DATABASES, count_rows, server_database_url
from tests.support.registry import Registry
from tests.support.timing import scaled

PIP_INSTALL_TIMEOUT_S = 600.0  # a bound on a failure, scaled
AGENT_SOURCE = Path(__file__).resolve().parents[2] / "device_agent"
SERVICE = "delivery-registry"
ISSUER = "fleet-delivery"


@dataclass
class Parts:
    broker: Mosquitto
    server: FleetServer
    registry: Registry
    secret: str


@pytest.fixture(scope="session", params=DATABASES)
def parts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Parts]:
    """One broker, server and registry per database, shared by this directory's modules: their
    devices, tokens and repositories have names of their own."""
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
    try:
        with (
            server_database_url(request.param) as url,
            FleetServer(server_dir, env=env, database_url=url) as server,
            Registry(
                realm=server.realm,
                service=SERVICE,
                issuer=ISSUER,
                rootcertbundle=server.bundle,
                directory=tmp_path_factory.mktemp("registry"),
                port=registry_port,
            ) as registry,
        ):
            if url:  # its API key is in its own schema, not in a file beside it
                assert count_rows(url, "api_keys") == 1
            secret = server.device_group("pilots")
            yield Parts(broker, server, registry, secret)
    finally:
        broker.stop()
        broker.cleanup()


@pytest.fixture(scope="session")
def fresh_agent(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``fleet-agent`` installed alone (``pip install ./device_agent``) into a fresh virtual
    environment, as on a device: the end-to-end tests run that one, not the developer's."""
    root = tmp_path_factory.mktemp("agent-venv")
    source = root / "src"
    shutil.copytree(
        AGENT_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run(
        [str(root / "venv/bin/python"), "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        cwd=root,
        env=env,
        capture_output=True,
        timeout=scaled(PIP_INSTALL_TIMEOUT_S),
    )
    return str(root / "venv/bin/fleet-agent")
