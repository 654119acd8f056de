"""The reference's portal walk-through in chromium, against a real ``fleet serve`` in front of
a real Distribution registry that trusts it, with skopeo pushing and pulling a small OCI
image built here.

An admin adds the token MyToken with a scope map made on the spot (samples/hello-world:
content/read, content/write), generates password1 with an expiration date, copies it, and
that password pushes and pulls through the registry; regenerating shows the new value once
and the old one stops working. The scope map is then changed as the reference's "Update
token permissions" steps do, the token disabled, enabled and deleted. A viewer reads every
page without a change button. axe-core checks every page visited; no CSP rule is tripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.stack import SERVER_ENV, Stack, denied, ok, registry_for, unauthorized
from tests.e2e.web.browser import axe_violations, dashboard_server, sign_in, watched_page
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e
PAGE_TIMEOUT_S = 10.0
FLUSH_WAIT_S = 20.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("web-portal")
    env = {**SERVER_ENV, "FLEET_HEALTH_FLUSH_SECONDS": "1"}
    with (
        dashboard_server(directory / "server", env=env) as server,
        registry_for(server, directory / "registry") as registry,
    ):
        yield Stack(server, registry, directory / "work")


@pytest.fixture
def page(chromium: Any, stack: Stack) -> Iterator[Any]:
    context = chromium.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.server.url)
    page = watched_page(context)
    page.set_default_timeout(scaled(PAGE_TIMEOUT_S) * 1000)
    yield page
    context.close()


def accessible(page: Any) -> None:
    assert axe_violations(page) == [], page.url


def generate(page: Any, slot: str, expiry: str = "", *, replacing: bool = False) -> str:
    """Generate ``slot`` on the token's page (through its second step); the value shown."""
    page.get_by_role("button", name=f"Generate {slot}").click()
    page.wait_for_url(re.compile(rf".*/passwords/{slot}\??$"))
    assert page.get_by_text("stops working at once").count() == (1 if replacing else 0)
    accessible(page)
    if expiry:
        page.get_by_label("Expiration date").fill(expiry)
    page.get_by_role("button", name="Generate", exact=True).click()
    field = page.get_by_label(f"The value of {slot}")
    field.wait_for()
    value: str = field.input_value()
    assert re.fullmatch(r"fltp_\S+", value), value
    assert page.get_by_text("It will not be shown again:").is_visible()
    accessible(page)
    return value


def test_the_portal_walk_through(stack: Stack, page: Any) -> None:
    server = stack.server
    sign_in(page, server, "alice", at="/ui/tokens")
    accessible(page)

    # Tokens > +Add; a token name; Scope map: Create new.
    page.get_by_role("button", name="+Add a token").click()
    page.wait_for_url(f"{server.url}/ui/tokens/new")
    accessible(page)
    page.get_by_label("Token name").fill("MyToken")
    page.get_by_label("Create new").check()
    page.get_by_label("Name of the new scope map").fill("MyToken-scope-map")
    page.get_by_label("Description", exact=True).fill("Push and pull samples/hello-world")
    # Under Repositories samples/hello-world; Permissions content/read and content/write; +Add.
    page.get_by_label("Repository of rule 1").fill("samples/hello-world")
    page.get_by_label("content/read on rule 1").check()
    page.get_by_label("content/write on rule 1").check()
    page.get_by_role("button", name="+Add", exact=True).click()
    page.get_by_label("Repository of rule 2").wait_for()
    assert page.get_by_label("Repository of rule 1").input_value() == "samples/hello-world"
    accessible(page)
    # A wrong wildcard in the new row is refused next to it, in the reference's words.
    page.get_by_label("Repository of rule 2").fill("samples/hello*")
    page.get_by_label("content/read on rule 2").check()
    page.get_by_role("button", name="Create", exact=True).click()
    assert page.locator("#err-repo-1").inner_text() == (
        "invalid repository rule 'samples/hello*': a wildcard must end the rule as '/*' "
        "(for example 'samples/*')"
    )
    accessible(page)
    page.get_by_label("Repository of rule 2").fill("")
    page.get_by_label("content/read on rule 2").uncheck()
    # The default status, Enabled; Create.
    assert page.get_by_label("Enabled", exact=True).is_checked()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/tokens/MyToken")
    assert page.get_by_text("Token MyToken created on scope map MyToken-scope-map").is_visible()
    rules = page.get_by_role("table", name=re.compile("^Rules of MyToken-scope-map"))
    assert rules.get_by_role("row", name="samples/hello-world content/read, content/write")
    accessible(page)

    # password1 with an expiration date, copied with the Copy button.
    expiry = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    value = generate(page, "password1", expiry)
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == value

    # The password pushes and pulls through the real registry; another repository is denied.
    creds = f"MyToken:{value}"
    ok(stack.push("samples/hello-world", creds))
    ok(stack.pull("samples/hello-world", creds))
    denied(stack.push("samples/nginx", creds))

    # Never shown again: the token's page shows its expiry, and its last use once written.
    def used_from_loopback() -> bool:
        page.goto(f"{server.url}/ui/tokens/MyToken")
        return "from 127.0.0.1" in page.locator("#details-title + table").inner_text()

    wait_until(used_from_loopback, "the token page shows its last use", timeout=FLUSH_WAIT_S)
    assert value not in page.content()
    assert page.locator(f'time[datetime^="{expiry}"]').count() == 1
    accessible(page)

    # Regenerate: the second step repeats Generate and says the old one stops working.
    again = generate(page, "password1", replacing=True)
    assert again != value
    unauthorized(stack.pull("samples/hello-world", creds))
    ok(stack.pull("samples/hello-world", f"MyToken:{again}"))
    page.goto(f"{server.url}/ui/tokens/MyToken")
    assert again not in page.content() and value not in page.content()

    # Update token permissions: samples/nginx content/read + content/write, and content/write
    # off samples/hello-world; Save.
    page.get_by_role("link", name="Scope maps").click()
    page.wait_for_url(f"{server.url}/ui/scope-maps")
    accessible(page)
    page.get_by_role("link", name="MyToken-scope-map").click()
    page.wait_for_url(f"{server.url}/ui/scope-maps/MyToken-scope-map")
    accessible(page)
    page.get_by_label("Repository of rule 2").fill("samples/nginx")
    page.get_by_label("content/read on rule 2").check()
    page.get_by_label("content/write on rule 2").check()
    page.get_by_label("content/write on rule 1").uncheck()
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_text("every token using it has the new permissions now").wait_for()
    accessible(page)
    new_creds = f"MyToken:{again}"
    ok(stack.push("samples/nginx", new_creds))
    denied(stack.push("samples/hello-world", new_creds))
    ok(stack.pull("samples/hello-world", new_creds))

    # Disable (a second step of the same name), Enable, Delete (a second step).
    page.get_by_role("link", name="MyToken", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/tokens/MyToken")
    page.get_by_role("button", name="Disable").click()
    page.wait_for_url(re.compile(r".*/ui/tokens/MyToken/disable\??$"))
    accessible(page)
    page.get_by_role("button", name="Disable").click()
    page.wait_for_url(f"{server.url}/ui/tokens/MyToken")
    assert page.get_by_text("Token MyToken is disabled.").is_visible()
    unauthorized(stack.pull("samples/hello-world", new_creds))
    page.get_by_role("button", name="Enable").click()
    page.get_by_text("Token MyToken is enabled").wait_for()
    ok(stack.pull("samples/hello-world", new_creds))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r".*/ui/tokens/MyToken/delete\??$"))
    accessible(page)
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{server.url}/ui/tokens")
    assert page.get_by_text("Token MyToken deleted.").is_visible()
    unauthorized(stack.pull("samples/hello-world", new_creds))
    accessible(page)
    assert page.csp_errors == []


def test_a_viewer_reads_tokens_and_scope_maps_without_change_buttons(
    stack: Stack, page: Any
) -> None:
    stack.create_token("Reader-1", ["samples/*", "content/read"])
    sign_in(page, stack.server, "victor", at="/ui/tokens")
    assert page.get_by_role("button", name="+Add a token").count() == 0
    accessible(page)
    page.get_by_role("link", name="Reader-1", exact=True).click()
    page.wait_for_url(f"{stack.server.url}/ui/tokens/Reader-1")
    assert page.get_by_role("main").get_by_role("button").count() == 0
    assert page.get_by_role("rowheader", name="samples/*").is_visible()
    accessible(page)
    page.get_by_role("link", name="Scope maps").click()
    page.wait_for_url(f"{stack.server.url}/ui/scope-maps")
    assert page.get_by_role("button", name="+Add a scope map").count() == 0
    accessible(page)
    for name in ("Reader-1-scope-map", "_repositories_admin"):
        page.goto(f"{stack.server.url}/ui/scope-maps/{name}")
        assert page.get_by_role("main").get_by_role("button").count() == 0
        accessible(page)
    assert page.csp_errors == []


def test_scope_map_pages_an_admin_reaches(stack: Stack, page: Any) -> None:
    sign_in(page, stack.server, "alice", at="/ui/tokens")
    page.goto(f"{stack.server.url}/ui/scope-maps")
    page.get_by_role("button", name="+Add a scope map").click()
    page.wait_for_url(f"{stack.server.url}/ui/scope-maps/new")
    accessible(page)
    page.get_by_label(re.compile("^Name")).fill("MyScopeMapWildcard")
    page.get_by_label("Description", exact=True).fill("Sample scope map with wildcards")
    page.get_by_label("Repository of rule 1").fill("samples/*")
    page.get_by_label("content/read on rule 1").check()
    page.get_by_label("content/write on rule 1").check()
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(f"{stack.server.url}/ui/scope-maps/MyScopeMapWildcard")
    accessible(page)
    page.goto(f"{stack.server.url}/ui/scope-maps/_repositories_pull")  # read-only for an admin
    assert page.get_by_role("main").get_by_role("button").count() == 0
    assert page.get_by_text("System-defined: read-only").is_visible()
    accessible(page)
    page.goto(f"{stack.server.url}/ui/scope-maps/MyScopeMapWildcard")
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r".*/scope-maps/MyScopeMapWildcard/delete\??$"))
    assert page.get_by_text("No token uses it.").is_visible()
    accessible(page)
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{stack.server.url}/ui/scope-maps")
    assert page.get_by_text("Scope map MyScopeMapWildcard deleted.").is_visible()
    assert page.csp_errors == []
