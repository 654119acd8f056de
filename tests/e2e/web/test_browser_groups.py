"""The Groups pages in a real browser: chromium against ``fleet serve``. An admin creates a
group and a one-time code and copies it with the Copy button; axe-core checks every groups
page an admin and a viewer reach, and the page's CSP is never tripped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.fleet_process import FleetServer
from tests.e2e.web.browser import axe_violations, dashboard_server, sign_in, watched_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with dashboard_server(tmp_path_factory.mktemp("web-groups")) as server:
        yield server


@pytest.fixture
def context(chromium: Any, server: FleetServer) -> Iterator[Any]:
    context = chromium.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Any:
    page = watched_page(context)
    page.set_default_timeout(10_000)
    return page


def test_create_a_group_and_copy_a_one_time_code(server: FleetServer, page: Any) -> None:
    sign_in(page, server, "alice", at="/ui/groups")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Create a group").click()
    page.wait_for_url(f"{server.url}/ui/groups/new")
    assert axe_violations(page) == []

    page.get_by_label("Name").fill("pilots-eu")
    page.get_by_label("Scope map").fill("_repositories_push")  # grants writing: refused
    page.get_by_label("Require approval").check()
    page.get_by_role("button", name="Create").click()
    error = page.locator("#err-scope_map")
    assert error.inner_text().startswith("scope map '_repositories_push' grants content/write")
    assert page.get_by_label("Name").input_value() == "pilots-eu"  # kept
    assert axe_violations(page) == []

    page.get_by_label("Scope map").fill("_repositories_pull")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"{server.url}/ui/groups/pilots-eu")
    assert page.get_by_text("Group pilots-eu created.").is_visible()
    assert axe_violations(page) == []

    page.get_by_label("One-time code (enrolls one device)").check()
    page.get_by_role("button", name="Create", exact=True).click()
    field = page.get_by_label("The one-time code (ends in", exact=False)
    field.wait_for()
    value = field.input_value()
    assert re.fullmatch(r"fltc_\S+", value), value
    assert page.get_by_text("It will not be shown again:").is_visible()
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == value
    assert axe_violations(page) == []

    page.goto(f"{server.url}/ui/groups/pilots-eu")  # the value is never shown again
    assert value not in page.content()
    hint = page.locator("td code").first.inner_text()
    assert value.endswith(hint) and len(hint) < len(value) // 2  # its hint only
    page.get_by_role("button", name=re.compile("^Revoke the code ending in")).click()
    page.wait_for_url(re.compile(r".*/secrets/\d+/revoke\??$"))  # a GET form: maybe a "?"
    assert page.get_by_role("heading", name=re.compile(r"^Revoke the one-time code")).is_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Revoke").click()
    page.wait_for_url(f"{server.url}/ui/groups/pilots-eu")
    assert page.get_by_text("revoked", exact=True).is_visible()
    assert axe_violations(page) == []

    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r".*/ui/groups/pilots-eu/delete\??$"))
    assert axe_violations(page) == []
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{server.url}/ui/groups")
    assert page.get_by_text("Group pilots-eu deleted.").is_visible()
    assert page.csp_errors == []


def test_a_viewer_reads_the_groups_pages_without_change_buttons(
    server: FleetServer, page: Any
) -> None:
    made = server.cli("group", "create", "--name", "readers", "--scope-map", "_repositories_pull")
    assert made.ok, made.stderr
    assert server.cli("group", "secret", "create", "--name", "readers").ok
    sign_in(page, server, "victor", at="/ui/groups")
    assert page.get_by_role("link", name="readers").is_visible()
    assert page.get_by_role("button", name="Create a group").count() == 0
    assert axe_violations(page) == []
    page.get_by_role("link", name="readers").click()
    page.wait_for_url(f"{server.url}/ui/groups/readers")
    assert page.get_by_role("main").get_by_role("button").count() == 0
    assert page.get_by_role("cell", name="_repositories_pull").is_visible()
    assert axe_violations(page) == []
    assert page.csp_errors == []
