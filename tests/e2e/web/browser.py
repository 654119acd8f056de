"""Debian's chromium driven by Playwright, and axe-core (vendored from npm) run in the page."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet_process import FleetServer

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "support" / "vendor" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


def chromium_or_skip() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI (scripts/system-deps installs it)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP does not block it.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in results["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def watched_page(context: Any) -> Any:
    """A new page of ``context`` that keeps, in ``page.csp_errors``, every console message
    about the Content-Security-Policy (a test asserts there are none)."""
    page = context.new_page()
    page.csp_errors = []
    page.on(
        "console",
        lambda m: page.csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return page


OPERATOR_PASSWORD = "correct horse battery staple"


def sign_in(page: Any, server: FleetServer, name: str, *, at: str) -> None:
    """Sign in as ``name`` (one of ``OPERATORS``) through the form, landing on ``at``."""
    page.goto(f"{server.url}/ui/sign-in?next={at}")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}{at}")


OPERATORS = (("alice", "admin"), ("victor", "viewer"))


@contextlib.contextmanager
def dashboard_server(directory: Path, env: dict[str, str] | None = None) -> Iterator[FleetServer]:
    """A real ``fleet serve`` with an admin (alice) and a viewer (victor), both signing in
    with ``OPERATOR_PASSWORD``, made on the server host as an operator would."""
    with FleetServer(directory, env=env) as server:
        create_operators(server)
        yield server


def create_operators(server: FleetServer) -> None:
    """The admin (alice) and the viewer (victor) on ``server``, made with ``fleet admin
    create-operator`` on its host, both signing in with ``OPERATOR_PASSWORD``."""
    for name, role in OPERATORS:
        made = server.cli(
            "admin", "create-operator", "--name", name, "--role", role, "--password-stdin",
            input=OPERATOR_PASSWORD + "\n",
        )  # fmt: skip
        assert made.ok, made.stderr
