"""End to end in a real browser: chromium against ``fleet serve``, signing in by keyboard and
mouse, with axe-core checking every page it reaches and the page's CSP never tripped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.e2e.web.browser import OPERATOR_PASSWORD as PASSWORD
from tests.e2e.web.browser import axe_violations, dashboard_server, watched_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with dashboard_server(tmp_path_factory.mktemp("web-server")) as server:
        yield server


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    yield watched_page(context)
    context.close()


def test_sign_in_by_keyboard_then_sign_out(server: FleetServer, page: Any) -> None:
    page.goto(f"{server.url}/")
    assert page.url == f"{server.url}/ui/sign-in?next=/ui/"
    assert axe_violations(page) == []
    assert page.evaluate("document.activeElement.id") == "name"  # the first field has focus

    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Password").press("Enter")
    assert page.get_by_role("alert").inner_text() == "wrong name or password"
    assert axe_violations(page) == []

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/ui/overview")  # "/" asked for /ui/, which is the overview
    assert page.get_by_text("alice (admin)").is_visible()
    page.get_by_role("link", name="Audit").click()
    page.wait_for_url(f"{server.url}/ui/audit")
    assert page.get_by_role("cell", name="operator.sign-in-failed").is_visible()
    assert axe_violations(page) == []
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/ui/sign-in")
    page.goto(f"{server.url}/ui/audit")
    assert page.url.startswith(f"{server.url}/ui/sign-in")
    assert page.csp_errors == []


def test_the_audit_log_filters_and_downloads(server: FleetServer, page: Any) -> None:
    page.goto(f"{server.url}/ui/sign-in")
    page.get_by_label("Name").fill("victor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/ui/overview")
    page.get_by_role("link", name="Audit").click()
    page.wait_for_url(f"{server.url}/ui/audit")
    page.get_by_label("Actor").fill("cli:server-host")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/audit?actor=cli%3Aserver-host*")
    actions = page.locator("tbody td:nth-child(3)").all_inner_texts()
    assert actions.count("operator.create") == 2 and set(actions) <= {
        "operator.create",
        "api-key.create",
    }
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0] == "id,at,actor,action,target,detail"
    assert text.count("operator.create") == 2
    assert axe_violations(page) == []
    assert page.csp_errors == []


def test_the_accessibility_check_finds_a_violation_when_there_is_one(page: Any) -> None:
    page.set_content('<html lang="en"><title>t</title><main><input type="text"></main></html>')
    assert [v["id"] for v in axe_violations(page)] == ["label"]
