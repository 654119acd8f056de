"""Fixtures for the agent's end-to-end tests: one real mosquitto for the session, a server login
on it, devices provisioned with the server's own ``provision_device``, and an agent running in a
thread of the test process. ``agent_stack`` adds the real ``fleet serve`` on that broker and a
Distribution registry that trusts it, started once for the session when a test asks."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_agent.runtime.agent import Agent
from device_agent.runtime.token_check import PasswordCheck, Verdict
from device_agent.state.config import AgentConfig, MqttConfig, PullConfig
from device_agent.state.credentials import Credentials
from device_agent.state.enrollment import Enrollment, load_enrollment
from device_agent.state.keys import load_device_keys
from device_agent.state.store import open_store
from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.provisioning import provision_device, provision_server_login
from tests.device_agent.agent_support import FakeServer, enroll_directly
from tests.e2e.agent.agent_mqtt import ServerSide
from tests.e2e.agent.agent_stack import (
    DEVICE_GROUP,
    DEVICE_REPOSITORIES,
    ISSUER,
    SERVICE,
    AgentStack,
    Login,
)
from tests.e2e.fleet_process import FleetServer
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.registry import Registry
from tests.support.timing import scaled

FAST_MQTT = MqttConfig(keepalive_s=5, reconnect_min_s=0.05, reconnect_max_s=0.3)
STOP_WAIT_S = 15.0  # unscaled: a bound on a stuck agent, never a pause


@pytest.fixture(scope="session")
def agent_broker() -> Iterator[Mosquitto]:
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def agent_dynsec(agent_broker: Mosquitto) -> Iterator[DynsecAdmin]:
    address = BrokerAddress(agent_broker.host, agent_broker.port)
    with DynsecAdmin(address, agent_broker.admin_username, agent_broker.admin_password) as admin:
        yield admin


@pytest.fixture(scope="session")
def fleet_server(agent_broker: Mosquitto, agent_dynsec: DynsecAdmin) -> Iterator[ServerSide]:
    username, password = f"server-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    provision_server_login(agent_dynsec, username, password)
    side = ServerSide(agent_broker.host, agent_broker.port, username, password)
    yield side
    side.close()


@pytest.fixture(scope="session")
def agent_stack(
    agent_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentStack]:
    """``fleet serve`` (SQLite, scheduler off: tests run its passes with ``fleet scheduler
    run-once``, an acknowledged rotation retires the old slot at the next pass) and the
    registry; a device group on ``edge/*`` and a push token."""
    registry_port = free_port()
    env = {
        "FLEET_REGISTRY_SERVICE": SERVICE,
        "FLEET_TOKEN_ISSUER": ISSUER,
        **agent_broker.fleet_env(),
        "FLEET_REGISTRY_LOGIN_SERVER": f"127.0.0.1:{registry_port}",
        "FLEET_SCHEDULER_ENABLED": "false",
        "FLEET_RETIRE_GRACE_SECONDS": "0",
    }
    with (
        FleetServer(tmp_path_factory.mktemp("fleet-server"), env=env) as server,
        Registry(
            realm=server.realm,
            service=SERVICE,
            issuer=ISSUER,
            rootcertbundle=server.bundle,
            directory=tmp_path_factory.mktemp("registry"),
            port=registry_port,
        ) as registry,
    ):
        secret = server.device_group(DEVICE_GROUP, DEVICE_REPOSITORIES)
        pusher = server.cli_ok(
            "token", "create", "--name", "agent-pusher", "--scope-map", "_repositories_push"
        ).json()
        login = Login("agent-pusher", pusher["credentials"]["passwords"][0]["value"])
        yield AgentStack(server, registry, secret, login, tmp_path_factory.mktemp("images"))


@dataclass
class Device:
    state_dir: Path
    enrollment: Enrollment
    server: FakeServer

    @property
    def device_id(self) -> str:
        return self.enrollment.device_id


def always_works(_credentials: Credentials) -> Verdict:
    return Verdict.WORKS


@pytest.fixture
def make_device(
    tmp_path: Path, agent_broker: Mosquitto, agent_dynsec: DynsecAdmin
) -> Callable[..., Device]:
    """A device enrolled on the test broker (its login made by the server's provisioning)."""

    def make(broker: Mosquitto = agent_broker, **options: str) -> Device:
        device_id = f"pi-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        admin = agent_dynsec
        with contextlib.ExitStack() as stack:
            if broker is not agent_broker:
                address = BrokerAddress(broker.host, broker.port)
                admin = stack.enter_context(
                    DynsecAdmin(address, broker.admin_username, broker.admin_password)
                )
            provision_device(admin, device_id, device_id, password)
        state_dir = tmp_path / device_id
        enrollment, server = enroll_directly(
            state_dir, device_id, broker_url=broker.url, mqtt_password=password, **options
        )
        return Device(state_dir, enrollment, server)

    return make


class RunningAgent:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.agent.run()
        except BaseException as error:
            self.error = error
            raise

    def stop(self) -> None:
        self.agent.request_stop()
        self.thread.join(scaled(STOP_WAIT_S))
        if self.thread.is_alive():
            raise TimeoutError("the agent did not stop")
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_agent() -> Iterator[Callable[..., RunningAgent]]:
    """start_agent(device, pull=PullConfig(...), check=...) -> a RunningAgent, stopped after."""
    running: list[RunningAgent] = []

    def start(
        device: Device | Path,
        *,
        pull: PullConfig | None = None,
        check: PasswordCheck | None = always_works,
    ) -> RunningAgent:
        """``device``: a test's Device, or the state directory ``enroll`` wrote; ``check=None``
        proves passwords at the enrollment's token endpoint, as the agent does by default."""
        state_dir = device if isinstance(device, Path) else device.state_dir
        store, _ = open_store(state_dir)
        agent = Agent(
            state_dir=state_dir,
            config=AgentConfig(pull=pull or PullConfig(), mqtt=FAST_MQTT),
            enrollment=load_enrollment(state_dir),
            keys=load_device_keys(state_dir),
            store=store,
            check_password=check,
        )
        handle = RunningAgent(agent)
        running.append(handle)
        handle.thread.start()
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()
