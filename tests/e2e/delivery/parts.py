"""The whole delivery path for real, as one context manager: a broker (mosquitto with dynamic
security, or a RabbitMQ 3.10 node that asks fleet over HTTP: ``FLEET_MQTT_AUTH=http``),
``fleet serve`` on it (SQLite or a fresh PostgreSQL schema) and a Distribution registry whose
token realm is that server, with a device group and its enrollment secret.

Used by this directory's ``parts`` fixture and by the dashboard's end-to-end test
(tests/e2e/web/test_browser_devices_e2e.py), which adds its operators to the same server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.postgres import count_rows, server_database_url
from tests.support.rabbitmq import RabbitMQ
from tests.support.registry import Registry
from tests.support.timing import scaled

SERVICE = "delivery-registry"
ISSUER = "fleet-delivery"
AGENT_COMMAND_TIMEOUT_S = 60.0  # unscaled; a bound on a failure
MOSQUITTO = "mosquitto"
RABBITMQ = "rabbitmq"
# What the RabbitMQ node asks: fleet's routes under this path.
RABBITMQ_AUTH_PATH = "/mqtt-auth/rabbitmq"


@dataclass
class Parts:
    broker: Mosquitto | RabbitMQ
    server: FleetServer
    registry: Registry
    secret: str
    broker_kind: str = MOSQUITTO

    @property
    def mqtt_protocol(self) -> int:
        """What a test device speaks: MQTT 5 to mosquitto, 3.1.1 to RabbitMQ 3.10."""
        return mqtt.MQTTv311 if self.broker_kind == RABBITMQ else mqtt.MQTTv5


def _broker(kind: str, server_port: int) -> Mosquitto | RabbitMQ:
    if kind == MOSQUITTO:
        return Mosquitto().start()
    node = RabbitMQ(auth_url=f"http://127.0.0.1:{server_port}{RABBITMQ_AUTH_PATH}")
    try:
        return node.start()
    except BaseException:
        node.cleanup()
        raise


@contextlib.contextmanager
def delivery_parts(
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    group: str = "pilots",
    env: dict[str, str] | None = None,
    broker_kind: str = MOSQUITTO,
) -> Iterator[Parts]:
    """Broker (``broker_kind``), server (scheduler off, plus ``env``) and registry on
    ``database``; ``group`` may read ``edge/*`` and ``secret`` enrolls into it."""
    server_port = free_port()  # the RabbitMQ node is told where to ask before fleet starts
    broker = _broker(broker_kind, server_port)
    registry_port = free_port()
    server_env = {
        "FLEET_REGISTRY_SERVICE": SERVICE,
        "FLEET_TOKEN_ISSUER": ISSUER,
        **broker.fleet_env(),
        "FLEET_REGISTRY_LOGIN_SERVER": f"127.0.0.1:{registry_port}",
        "FLEET_SCHEDULER_ENABLED": "false",
    }
    server_env |= env or {}
    try:
        with (
            server_database_url(database) as url,
            FleetServer(
                tmp_path_factory.mktemp("fleet"),
                env=server_env,
                database_url=url,
                port=server_port,
            ) as server,
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
            yield Parts(broker, server, registry, server.device_group(group), broker_kind)
    finally:
        broker.stop()
        broker.cleanup()


def agent_env(state: Path) -> dict[str, str]:
    """The environment of a ``fleet-agent`` process on its own state directory: none of the
    server's ``FLEET_*`` settings and no Python path of this test run."""
    drop = ("PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_") and k not in drop}
    return {**env, "FLEET_AGENT_STATE_DIR": str(state)}


@dataclass(frozen=True)
class AgentCli:
    """``fleet-agent`` (the executable at ``path``) on one state directory, as a device runs it."""

    path: str
    state: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``fleet-agent ARGS``, to its end."""
        return subprocess.run(
            [self.path, *args],
            env=agent_env(self.state),
            capture_output=True,
            text=True,
            timeout=scaled(AGENT_COMMAND_TIMEOUT_S),
            check=False,
        )

    def start(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        """``fleet-agent run --config CONFIG`` in the background, its output added to ``log``."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [self.path, "run", "--config", str(config)],
                env=agent_env(self.state),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
