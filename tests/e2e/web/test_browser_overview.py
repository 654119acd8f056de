"""The overview in chromium against ``fleet serve``: failed registry logins reach its tables
(through the health recorder's batched writes), axe-core finds no serious or critical
violation, and the inline SVG chart trips no Content-Security-Policy rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.fleet_process import FleetServer
from tests.e2e.web.browser import OPERATOR_PASSWORD as PASSWORD
from tests.e2e.web.browser import axe_violations, dashboard_server
from tests.support.timing import wait_until

pytestmark = pytest.mark.e2e
FLUSH_WAIT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    env = {"FLEET_HEALTH_FLUSH_SECONDS": "1"}
    with dashboard_server(tmp_path_factory.mktemp("web-overview"), env=env) as server:
        assert server.cli("token", "create", "--name", "robot-1", "--repository", "samples/*",
                          "content/read").ok  # fmt: skip
        yield server


def test_the_overview_in_a_browser(server: FleetServer, chromium: Any) -> None:
    for _ in range(3):
        answer = requests.get(
            server.realm,
            params={"service": "fleet-registry", "scope": "repository:samples/x:pull"},
            auth=("robot-1", "not-its-password"),
            timeout=10,
        )
        assert answer.status_code == 401
    context = chromium.new_context()
    page = context.new_page()
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        page.goto(f"{server.url}/ui/")
        page.get_by_label("Name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/ui/overview")

        def top_tokens() -> list[str]:
            # Each gunicorn worker writes what it saw every second: the 3 failures may have
            # landed on both, so wait for the sum, not for the first write.
            page.reload()
            rows: list[str] = page.locator("table.top-tokens tbody tr").all_inner_texts()
            return rows

        wait_until(
            lambda: top_tokens() == ["robot-1\t3"],
            "both workers wrote robot-1's 3 failed logins",
            timeout=FLUSH_WAIT_S,
            poll=0.5,
        )
        failed = page.get_by_role("link", name="3 failed registry logins in 24 h")
        assert failed.is_visible()
        assert page.get_by_role("img", name=(
            "Rotations, acknowledged deliveries and failed logins per hour, last 7 days"
        )).is_visible()  # fmt: skip
        assert page.locator("svg.chart rect").count() == 3 * 168
        # the figures' table opens from its summary, by keyboard
        page.get_by_text("The chart's figures, hour by hour").focus()
        page.keyboard.press("Enter")
        assert page.locator("table.figures tbody tr").first.is_visible()
        assert axe_violations(page) == []
        page.get_by_role("link", name="Audit").click()
        page.wait_for_url(f"{server.url}/ui/audit")
        assert csp_errors == []
    finally:
        context.close()
