"""The Devices pages in a real browser: chromium against ``fleet serve`` with mosquitto, and
devices enrolled by the real agent. An admin searches, opens a device, disables it with a
reason and enables it again, then disables two at once; a viewer reads both pages without a
change button. axe-core checks every page on the way, and the CSP is never tripped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.e2e.web.browser import axe_violations, dashboard_server, sign_in, watched_page
from tests.support.mosquitto import Mosquitto
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e
AGENT = str(Path(sys.executable).with_name("fleet-agent"))
DEVICES = ("pi-0001", "pi-0002", "pi-0003", "rpi-0001")
ENROLL_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    root = tmp_path_factory.mktemp("web-devices")
    with Mosquitto() as broker, dashboard_server(root, env=broker.fleet_env()) as server:
        secret = server.device_group("pilots")
        for device_id in DEVICES:
            enrolled = subprocess.run(
                [AGENT, "enroll", "--server", server.url, "--device-id", device_id,
                 "--state-dir", str(root / device_id)],
                env={**os.environ, "FLEET_AGENT_ENROLL_SECRET": secret},
                capture_output=True, text=True, timeout=scaled(ENROLL_TIMEOUT_S),
            )  # fmt: skip
            assert enrolled.returncode == 0, enrolled.stderr
        yield server


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    page = watched_page(context)
    page.set_default_timeout(10_000)
    yield page
    context.close()


def rows(page: Any) -> list[str]:
    return page.locator("table.devices tbody th[scope=row] a").all_inner_texts()


def test_search_disable_and_enable_a_device(server: FleetServer, page: Any) -> None:
    sign_in(page, server, "alice", at="/ui/devices")
    assert rows(page) == list(DEVICES)
    assert axe_violations(page) == []

    page.get_by_label("Device id starts with").fill("pi-000")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*/ui/devices\?q=pi-000.*"))
    assert rows(page) == ["pi-0001", "pi-0002", "pi-0003"]
    assert axe_violations(page) == []

    page.get_by_role("link", name="pi-0002", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/devices/pi-0002")
    assert page.locator("#device-status").inner_text() == "active"
    assert page.get_by_role("cell", name="device.enroll").is_visible()  # the timeline
    assert axe_violations(page) == []

    page.get_by_label("Reason").fill("left on a train")
    page.get_by_role("button", name="Disable").click()
    page.wait_for_url(re.compile(r".*/ui/devices/pi-0002/disable\?reason=.*"))
    assert page.get_by_role("heading", name="Disable pi-0002?").is_visible()
    assert page.get_by_text("Reason, kept in the audit log: left on a train").is_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Disable").click()
    page.wait_for_url(f"{server.url}/ui/devices/pi-0002")
    assert page.locator("#device-status").inner_text() == "disabled"
    assert page.get_by_text(
        "pi-0002 disabled: its registry token and broker login are cut."
    ).is_visible()
    assert page.get_by_text("reason=left on a train").is_visible()
    assert axe_violations(page) == []
    shown = server.cli("device", "show", "--name", "pi-0002").json()
    assert shown["status"] == "disabled"

    page.get_by_role("button", name="Enable").click()
    page.wait_for_url(re.compile(r".*/ui/devices/pi-0002/enable\??$"))
    assert axe_violations(page) == []
    page.get_by_role("button", name="Enable").click()
    page.wait_for_url(f"{server.url}/ui/devices/pi-0002")
    assert page.locator("#device-status").inner_text() == "active"
    assert axe_violations(page) == []
    assert page.csp_errors == []


def test_disable_two_devices_at_once(server: FleetServer, page: Any) -> None:
    sign_in(page, server, "alice", at="/ui/devices")
    page.goto(f"{server.url}/ui/devices?q=pi-000")
    page.get_by_role("checkbox", name="pi-0001", exact=True).check()
    page.get_by_role("checkbox", name="pi-0003", exact=True).check()
    page.locator("#bulk-reason").fill("batch recalled")
    page.get_by_role("button", name="Disable").click()
    page.get_by_role("heading", name="Disable 2 device(s)?").wait_for()
    assert page.get_by_text("2 device(s) are disabled: pi-0001, pi-0003.").is_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Disable").click()
    page.get_by_role("heading", name="Disable: 2 of 2 device(s) disabled").wait_for()
    assert page.locator("td.outcome").all_inner_texts() == ["disabled", "disabled"]
    assert axe_violations(page) == []
    page.get_by_role("link", name="Back to the devices").click()
    page.wait_for_url(f"{server.url}/ui/devices?q=pi-000")
    page.goto(f"{server.url}/ui/devices?status=disabled")
    assert rows(page) == ["pi-0001", "pi-0003"]
    assert page.csp_errors == []


def test_a_viewer_reads_both_pages_without_change_buttons(server: FleetServer, page: Any) -> None:
    sign_in(page, server, "victor", at="/ui/devices")
    main = page.get_by_role("main")
    assert rows(page) == list(DEVICES)
    assert page.locator("table.devices input[type=checkbox]").count() == 0
    assert [b.inner_text() for b in main.get_by_role("button").all()] == ["Search"]
    assert axe_violations(page) == []
    page.get_by_role("link", name="rpi-0001", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/devices/rpi-0001")
    assert page.get_by_role("main").get_by_role("button").count() == 0
    assert axe_violations(page) == []
    assert page.csp_errors == []
