"""The whole delivery path for real: fleet serve + a broker + Distribution. With mosquitto
(dynamic security) once on SQLite and once on a fresh PostgreSQL schema; with a RabbitMQ 3.10
node asking fleet over HTTP (FLEET_MQTT_AUTH=http) on SQLite only, to keep CI time down."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.delivery.parts import MOSQUITTO, RABBITMQ, Parts, delivery_parts
from tests.support.postgres import POSTGRESQL, SQLITE
from tests.support.timing import scaled

PIP_INSTALL_TIMEOUT_S = 600.0  # a bound on a failure, scaled
AGENT_SOURCE = Path(__file__).resolve().parents[3] / "device_agent"


STACKS = [
    pytest.param((MOSQUITTO, SQLITE), id="mosquitto-sqlite"),
    pytest.param((MOSQUITTO, POSTGRESQL), id="mosquitto-postgresql", marks=pytest.mark.postgres),
    pytest.param((RABBITMQ, SQLITE), id="rabbitmq-sqlite"),
]


@pytest.fixture(scope="session", params=STACKS)
def parts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Parts]:
    """One broker, server and registry per stack (broker, database), shared by this
    directory's modules: their devices, tokens and repositories have names of their own."""
    broker_kind, database = request.param
    with delivery_parts(database, tmp_path_factory, broker_kind=broker_kind) as parts:
        yield parts


@pytest.fixture
def mosquitto_parts(parts: Parts) -> Parts:
    """``parts`` for a test about mosquitto's dynamic security itself: skipped on RabbitMQ."""
    if parts.broker_kind != MOSQUITTO:
        pytest.skip("about mosquitto's dynamic security")
    return parts


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
