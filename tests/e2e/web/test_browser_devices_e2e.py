"""The Devices pages end to end, in a real browser over real parts (issue 11).

``fleet serve`` on mosquitto with dynamic security and a Distribution registry
(tests/e2e/delivery/parts.py); one real agent (``fleet-agent enroll`` and ``run``, a
subprocess on its own state directory) pulling an image pushed there with skopeo, and 999 more
devices enrolled through ``POST /api/v1/enroll`` with keys of their own, so the search has to
find one device among 1,000. In chromium an admin finds the agent's device by its id prefix,
disables it with a reason and confirms; outside the browser its registry password, the one the
agent stored, gets 401 at ``/oauth2/token`` and its broker login is refused; the audit page
names the operator and the reason. Enabled again from the browser, the device pulls.

The 999 enrollments are real requests, four at a time (two gunicorn workers): each costs the
server about 30 ms (the broker login made over dynamic security, the first password sealed to
the device and published, the commits), so they take about 30 s on two idle cores and up to
100 s on a loaded machine; their bound is ``ENROLL_ALL_S``. The server runs on SQLite only:
the same pages on PostgreSQL at 100,000 devices are bench/dashboard_pages.py's subject.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from device_agent.state.enrollment import load_enrollment
from device_agent.state.store import load_state
from fleet.mqtt.provisioning import device_client_id
from tests.e2e.delivery.device import WireDevice
from tests.e2e.delivery.parts import SERVICE, AgentCli, Parts, delivery_parts
from tests.e2e.mqtt.conftest import MqttTestClient
from tests.e2e.web.browser import OPERATOR_PASSWORD, axe_violations, create_operators, watched_page
from tests.support import skopeo
from tests.support.oci import build_oci_image
from tests.support.postgres import SQLITE
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

AGENT = str(Path(sys.executable).with_name("fleet-agent"))  # the project's own install
GROUP = "e2e-fleet"
IMAGE = "edge/e2e-app:1.0"
DEVICES = 1_000
TARGET_INDEX = 613
PREFIX = f"e2e-{TARGET_INDEX:04d}"  # the agent's id starts with it; no other device's does
TARGET = f"{PREFIX}-agent"
REASON = "reported stolen, ticket 4711"
ENROLL_CLIENTS = 4  # the server has two workers; four clients keep both busy
# Unscaled bounds on a failure (tests/support/timing.py scales them).
ENROLL_ALL_S = 300.0
WAIT_S = 30.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
STATUS_POLL_S = 0.2  # each look at the server's view of the device is a `fleet` process
PAGE_TIMEOUT_MS = 15_000


@dataclass
class Fleet:
    parts: Parts
    agent: AgentCli  # on the agent's state directory
    enroll_seconds: float

    def shown(self, device_id: str = TARGET) -> dict[str, Any]:
        """The server's view of a device (``fleet device show``)."""
        shown = self.parts.server.cli_ok("device", "show", "--name", device_id)
        view: dict[str, Any] = shown.json()
        return view


def _enroll_others(parts: Parts) -> float:
    """Enroll the 999 other devices over HTTP, ``ENROLL_CLIENTS`` at a time; the seconds it took."""
    others = [f"e2e-{i:04d}" for i in range(DEVICES) if i != TARGET_INDEX]

    def enroll(device_id: str) -> int:
        return WireDevice(device_id, parts.server.url).enroll(parts.secret).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(ENROLL_CLIENTS) as pool:
        answers = list(pool.map(enroll, others, timeout=scaled(ENROLL_ALL_S)))
    took = time.perf_counter() - started
    assert answers == [201] * len(others), sorted(set(answers))
    return took


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The parts, the dashboard's operators, an image, the running agent and 999 devices."""
    workdir = tmp_path_factory.mktemp("devices-e2e")
    with delivery_parts(SQLITE, tmp_path_factory, group=GROUP) as parts:
        server = parts.server
        create_operators(server)
        pusher = server.cli_ok(
            "token", "create", "--name", "e2e-pusher", "--scope-map", "_repositories_push"
        ).json()
        creds = f"e2e-pusher:{pusher['credentials']['passwords'][0]['value']}"
        repository, tag = IMAGE.split(":")
        image = build_oci_image(workdir / "image", tag=tag)
        pushed = skopeo.copy_to_registry(image, parts.registry.host_port, repository, tag, creds)
        assert pushed.ok, pushed.output

        state = workdir / "agent"
        agent = AgentCli(AGENT, state)
        enrolled = agent(
            "enroll", "--server", server.url, "--secret", parts.secret, "--device-id", TARGET
        )
        assert enrolled.returncode == 0, enrolled.stderr
        config = workdir / "agent.toml"
        config.write_text(
            f'[pull]\nimages = ["{IMAGE}"]\ninterval = 3600\ntls_verify = false\n'
            "[mqtt]\nreconnect_min = 0.1\nreconnect_max = 1\n"
        )
        log = workdir / "agent.log"
        running = agent.start(config, log)
        try:
            took = _enroll_others(parts)
            print(f"\n{DEVICES - 1} devices enrolled over HTTP in {took:.1f} s")  # shown with -s
            fleet = Fleet(parts, agent, took)
            wait_until(
                lambda: fleet.shown()["lastPullOk"] is True,
                "the agent's first pull, reported to the server",
                timeout=WAIT_S,
                poll=STATUS_POLL_S,
            )
            yield fleet
        finally:
            running.terminate()
            running.wait(scaled(STOP_TIMEOUT_S))
        text = log.read_text()
        assert "fltp_" not in text and "fltm_" not in text, "a password in the agent's log"


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    page = watched_page(context)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    yield page
    context.close()


def _token_answer(fleet: Fleet, username: str, password: str) -> int:
    """The status of ``GET /oauth2/token`` for a pull of the agent's image with this login."""
    answer = requests.get(
        fleet.parts.server.realm,
        params={"service": SERVICE, "scope": f"repository:{IMAGE.split(':')[0]}:pull"},
        auth=(username, password),
        timeout=scaled(HTTP_TIMEOUT_S),
    )
    return answer.status_code


def _broker_connack(fleet: Fleet, username: str, password: str) -> str:
    """The CONNACK for this login, with the agent's client id (the only one it is bound to)."""
    broker = fleet.parts.broker
    device_id = load_enrollment(fleet.agent.state).device_id
    client = MqttTestClient(
        broker.host, broker.port, username, password, client_id=device_client_id(device_id)
    )
    try:
        reason = client.connect()
        return "Success" if not reason.is_failure else str(reason)
    finally:
        client.close()


def _confirm(page: Any, button: str, then: str) -> None:
    """Press ``button``, check the confirmation step (its button repeats the name), confirm."""
    page.get_by_role("button", name=button, exact=True).click()
    page.get_by_text(f"What happens when you press {button}:").wait_for()  # confirm.html
    assert axe_violations(page) == []
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(then)


def _status(page: Any) -> str:
    """The status the device page shows."""
    return str(page.locator("#device-status").inner_text())


def _pulled_since(fleet: Fleet, moment: datetime) -> Callable[[], bool]:
    """True once the device has reported to the server a successful pull after ``moment``."""

    def pulled() -> bool:
        view = fleet.shown()
        at = view["lastPullAt"]
        return view["lastPullOk"] is True and at is not None and datetime.fromisoformat(at) > moment

    return pulled


def test_find_one_device_among_1000_disable_it_and_enable_it(fleet: Fleet, page: Any) -> None:
    server = fleet.parts.server
    listed = server.cli_ok("device", "list", "--output", "json").json()
    assert len(listed) == DEVICES
    assert [d["deviceId"] for d in listed if d["deviceId"].startswith(PREFIX)] == [TARGET]

    # What the agent holds: its stored registry password and its broker login. Both work.
    stored = load_state(fleet.agent.state).current
    assert stored is not None
    enrollment = load_enrollment(fleet.agent.state)
    registry_user, mqtt = enrollment.registry.username, enrollment.mqtt
    assert _token_answer(fleet, registry_user, stored.password) == 200
    assert _broker_connack(fleet, mqtt.username, mqtt.password) == "Success"

    # Sign in and find the device by its id prefix.
    page.goto(f"{server.url}/ui/sign-in?next=/ui/devices")
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/ui/devices")
    main = page.get_by_role("main")
    assert main.get_by_role("link", name=TARGET).count() == 0  # not on the first page
    assert axe_violations(page) == []
    page.get_by_label("Device id starts with").fill(PREFIX)
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(rf".*/ui/devices\?(.*&)?q={PREFIX}(&.*)?$"))
    found = main.get_by_role("link", name=re.compile(r"^e2e-\d{4}"))
    assert found.all_inner_texts() == [TARGET]
    assert axe_violations(page) == []

    # Its page: Disable with a reason, confirmed on the second step.
    found.click()
    device_url = f"{server.url}/ui/devices/{TARGET}"
    page.wait_for_url(device_url)
    assert _status(page) == "active"
    assert axe_violations(page) == []
    page.get_by_label("Reason").fill(REASON)
    _confirm(page, "Disable", device_url)
    assert _status(page) == "disabled"
    assert f"{TARGET} disabled" in page.locator(".flashes").inner_text()
    assert axe_violations(page) == []

    # Outside the browser: the stored password is refused, and so is the broker login.
    assert fleet.shown()["status"] == "disabled"
    assert _token_answer(fleet, registry_user, stored.password) == 401
    assert _broker_connack(fleet, mqtt.username, mqtt.password) == "Not authorized"
    wait_until(
        lambda: load_state(fleet.agent.state).current is None,
        "the agent to wipe its credentials",
        timeout=WAIT_S,
    )

    # The audit log names the operator and the reason.
    page.goto(f"{server.url}/ui/audit?action=device.disable&target={TARGET}")
    row = page.get_by_role("row", name=re.compile(re.escape(TARGET)))
    assert row.count() == 1
    cells = row.get_by_role("cell").all_inner_texts()
    assert "operator:alice" in cells and any(REASON in cell for cell in cells), cells
    assert axe_violations(page) == []

    # Enable from the browser; the device gets a new password and pulls on request.
    page.goto(device_url)
    enabled_at = datetime.now(UTC)
    _confirm(page, "Enable", device_url)
    assert _status(page) == "active"
    assert f"{TARGET} enabled" in page.locator(".flashes").inner_text()
    assert axe_violations(page) == []
    wait_until(
        lambda: (load_state(fleet.agent.state).current or stored).password != stored.password,
        "the agent to hold a new password",
        timeout=WAIT_S,
        poll=STATUS_POLL_S,
    )
    _confirm(page, "Pull now", device_url)
    assert f"{TARGET} was told to pull now" in page.locator(".flashes").inner_text()
    wait_until(
        _pulled_since(fleet, enabled_at),
        "a successful pull after Enable, reported to the server",
        timeout=WAIT_S,
        poll=STATUS_POLL_S,
    )
    renewed = load_state(fleet.agent.state).current
    assert renewed is not None
    assert _token_answer(fleet, registry_user, renewed.password) == 200
    assert _broker_connack(fleet, mqtt.username, mqtt.password) == "Success"
    # The password it held before the disable stays refused: enabling revives no old secret.
    assert _token_answer(fleet, registry_user, stored.password) == 401
    assert page.csp_errors == []
    status = json.loads(fleet.agent("status", "--json").stdout)
    assert status["last_pull"]["ok"] is True
