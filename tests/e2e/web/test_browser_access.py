"""The access explainer in chromium against ``fleet serve``: a viewer fills the form with the
keyboard and the mouse, reads Allowed or Denied with the rules behind it, and the answer is the
one the real token endpoint gives; axe-core finds no serious or critical violation and the
page's Content-Security-Policy is never tripped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from tests.e2e.fleet_process import FleetServer
from tests.e2e.web.browser import OPERATOR_PASSWORD as PASSWORD
from tests.e2e.web.browser import axe_violations, dashboard_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with dashboard_server(tmp_path_factory.mktemp("web-access")) as server:
        yield server


@pytest.fixture(scope="module")
def password(server: FleetServer) -> str:
    """robot-1's password1, as its creation showed it once."""
    made = server.cli(
        "token", "create", "--name", "robot-1",
        "--repository", "sample/*", "content/read",
        "--repository", "sample/teama/*", "content/write",
    )  # fmt: skip
    assert made.ok, made.stderr
    value: str = made.json()["credentials"]["passwords"][0]["value"]
    return value


def _endpoint_grants(server: FleetServer, password: str, repository: str, action: str) -> list[str]:
    """The registry actions the real token endpoint puts in the JWT's access claim."""
    answer = requests.get(
        server.realm,
        params={"service": "fleet-registry", "scope": f"repository:{repository}:{action}"},
        auth=("robot-1", password),
        timeout=10,
    )
    if answer.status_code == 401:
        return []
    answer.raise_for_status()
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    return [a for entry in claims["access"] for a in entry["actions"]]


def test_a_viewer_explains_access_in_a_browser(
    server: FleetServer, password: str, chromium: Any
) -> None:
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        page.goto(f"{server.url}/ui/sign-in?next=/ui/access")
        page.get_by_label("Name").fill("victor")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/ui/access")
        assert page.get_by_role("link", name="Access").get_attribute("aria-current") == "page"
        assert axe_violations(page) == []

        # Allowed: typed with the keyboard, sent with Enter.
        page.get_by_label("A token").check()
        page.get_by_label("Token or scope map name").fill("robot-1")
        page.get_by_label("Repository").fill("sample/teama/app")
        page.get_by_label("Action").select_option("content/write")
        page.get_by_label("Repository").press("Enter")
        page.wait_for_url("**/ui/access?*")
        assert page.get_by_role("heading", name="Allowed").is_visible()
        rows = page.locator("table.matched tbody tr").all_inner_texts()
        assert rows == ["sample/*\tcontent/read\tno", "sample/teama/*\tcontent/write\tyes"]
        assert _endpoint_grants(server, password, "sample/teama/app", "push") == ["push"]
        assert axe_violations(page) == []

        # Denied: the action is not granted; the page says why, and so does the endpoint.
        page.get_by_label("Repository").fill("sample/other")
        page.get_by_role("button", name="Explain").click()
        page.get_by_role("heading", name="Denied").wait_for()
        why = page.locator("ul.reasons li").all_inner_texts()
        assert why == [
            "the one rule of scope map 'robot-1-scope-map' that matches 'sample/other' "
            "(sample/*) does not grant content/write; it grants content/read"
        ]
        assert _endpoint_grants(server, password, "sample/other", "push") == []
        assert axe_violations(page) == []

        # A bad repository name: the error is next to its field, the form keeps the input.
        page.get_by_label("Repository").fill("Sample/Other")
        page.get_by_role("button", name="Explain").click()
        error = page.locator("#err-repository")
        error.wait_for()
        assert error.inner_text().startswith("invalid repository name 'Sample/Other'")
        assert page.get_by_label("Token or scope map name").input_value() == "robot-1"
        assert axe_violations(page) == []
        assert csp_errors == []
    finally:
        context.close()
