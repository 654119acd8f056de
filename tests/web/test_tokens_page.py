"""The Tokens pages through the HTTP a browser sends: the paged list, +Add on an existing or a
new scope map, a token's page, Generate shown once, status, scope map, Delete, device tokens,
and what a viewer may not do."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest

from fleet.domain.errors import NotFoundError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker
from tests.support.statements import counted
from tests.web.conftest import Browser
from tests.web.test_groups_page import _audit

HELLO = [RepositoryActions("samples/hello-world", ("content/read", "content/write"))]
VALUE = re.compile(r'id="created-value" readonly value="([^"]+)"')
NEW_MAP = {
    "name": "MyToken",
    "map_choice": "new",
    "map_name": "",
    "map_description": "",
    "rows": "1",
    "repo-0": "samples/hello-world",
    "act-0": ["content/read", "content/write"],
    "status": "enabled",
}


@pytest.fixture
def fleet(services: Services) -> Services:
    services.scope_maps.create("MyScopeMap", HELLO, "Sample scope map", actor="test")
    return services


@pytest.fixture
def admin(browser: Browser, fleet: Services) -> Browser:
    browser.sign_in("alice")
    return browser


def _text(answer: Any) -> str:
    return html.unescape(answer.get_data(as_text=True))


def _post(browser: Browser, path: str, data: dict[str, Any], csrf_from: str) -> Any:
    return browser.client.post(path, data={"csrf_token": browser.csrf(csrf_from), **data})


def _create(browser: Browser, **changes: Any) -> Any:
    return _post(browser, "/ui/tokens/new", {**NEW_MAP, **changes}, "/ui/tokens/new")


def _user_maps(services: Services) -> list[str]:
    return [m.name for m in services.scope_maps.list().items if not m.name.startswith("_")]


def test_the_list_shows_each_token_and_pages_in_constant_queries(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    expiry = clock() + timedelta(days=30)
    fleet.tokens.generate_credentials("MyToken", ["password1"], expiry=expiry, actor="t")
    fleet.tokens.create("Offline", scope_map="MyScopeMap", status="disabled", actor="t")
    page = _text(admin.get("/ui/tokens"))
    row = re.search(r'<th scope="row"><a href="/ui/tokens/MyToken">MyToken</a></th>(.*?)</tr>',
                    page, re.S)  # fmt: skip
    assert row, page
    found = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in found]
    assert cells[0] == "MyScopeMap" and cells[1] == "enabled"
    assert cells[2] == "in 30 d" and cells[3] == "never"
    assert "password-value" not in page and "fltp_" not in page
    assert "disabled</span>" in page and 'aria-current="page">Tokens</a>' in page
    assert "+Add a token" in page

    with counted(fleet) as two:
        admin.get("/ui/tokens")
    for n in range(60):
        made = fleet.tokens.create(f"Token-{n:03d}", scope_map="MyScopeMap", actor="t")
        assert made.passwords
    with counted(fleet) as full:
        first = _text(admin.get("/ui/tokens"))
    assert len(full) == len(two)
    listed = re.findall(r'<th scope="row"><a href="/ui/tokens/([^"]+)">', first)
    assert len(listed) == 50 and listed[:2] == ["MyToken", "Offline"]
    next_link = first.split('" rel="next"')[0].rsplit('href="', 1)[1]
    second = _text(admin.get(next_link))
    rest = re.findall(r'<th scope="row"><a href="/ui/tokens/([^"]+)">', second)
    assert rest == [f"Token-{n:03d}" for n in range(48, 60)]
    assert 'rel="next"' not in second and 'rel="prev">Previous</a>' in second
    prev_link = second.split('" rel="prev"')[0].rsplit('href="', 1)[1]
    back = _text(admin.get(prev_link))
    assert re.findall(r'<th scope="row"><a href="/ui/tokens/([^"]+)">', back) == listed
    assert 'rel="prev"' not in back and 'rel="next"' in back
    bad = admin.get("/ui/tokens?cursor=WyJ4Il0.0000")
    assert bad.status_code == 400 and "the cursor is not valid for this list" in _text(bad)


def test_create_a_token_on_an_existing_scope_map(admin: Browser, fleet: Services) -> None:
    form = _text(admin.get("/ui/tokens/new"))
    assert '<option value="MyScopeMap">' in form and '<option value="_repositories_pull">' in form
    answer = _create(admin, map_choice="existing", scope_map="MyScopeMap", status="disabled")
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/tokens/MyToken"
    made = fleet.tokens.show("MyToken")
    assert (made.scope_map, made.status, made.passwords) == ("MyScopeMap", "disabled", ())
    assert _audit(fleet)[-1] == ("operator:alice", "token.create", "MyToken")
    assert _user_maps(fleet) == ["MyScopeMap"]  # the rows of "Create new" were not used
    page = _text(admin.get("/ui/tokens/MyToken"))
    assert "Token MyToken created on scope map MyScopeMap: generate a password" in page


def test_create_a_token_with_a_new_scope_map_made_on_the_spot(
    admin: Browser, fleet: Services
) -> None:
    """The portal's steps: name, Create new, a name and description for the map,
    samples/hello-world with content/read and content/write, +Add, Create."""
    added = _create(admin, map_name="hello-rw", map_description="For the walk-through")
    assert added.status_code == 303
    made = fleet.tokens.show("MyToken")
    assert made.scope_map == "hello-rw" and made.status == "enabled" and made.passwords == ()
    new_map = fleet.scope_maps.show("hello-rw")
    assert new_map.description == "For the walk-through"
    assert new_map.entries == (
        ("samples/hello-world", "content/read"),
        ("samples/hello-world", "content/write"),
    )
    assert _audit(fleet)[-2:] == [
        ("operator:alice", "scope-map.create", "hello-rw"),
        ("operator:alice", "token.create", "MyToken"),
    ]
    default = _create(admin, name="Wildcard", **{"repo-0": "samples/*"})
    assert default.status_code == 303
    assert fleet.tokens.show("Wildcard").scope_map == "Wildcard-scope-map"
    # The reference's own rule, capitals and all, is kept as written (matched ignoring case).
    teams = _create(admin, name="TeamA", **{"repo-0": "sample/teamA/*"})
    assert teams.status_code == 303
    assert fleet.scope_maps.show("TeamA-scope-map").entries[0][0] == "sample/teamA/*"


def test_add_row_brings_the_form_back_with_one_more_row_and_makes_nothing(
    admin: Browser, fleet: Services
) -> None:
    answer = _create(admin, add_row="1")
    page = _text(answer)
    assert answer.status_code == 200
    assert 'name="rows" value="2"' in page and 'id="repo-1"' in page
    assert 'id="repo-0" name="repo-0" value="samples/hello-world"' in page
    assert page.count("checked") >= 3  # both actions of row 0, and "Create new"
    assert 'id="map-new" name="map_choice" value="new" checked' in page
    with pytest.raises(NotFoundError):
        fleet.tokens.show("MyToken")
    two_rows = _create(
        admin,
        rows="2",
        **{"repo-1": "samples/nginx", "act-1": ["content/read"]},
    )
    assert two_rows.status_code == 303
    assert ("samples/nginx", "content/read") in fleet.scope_maps.show("MyToken-scope-map").entries


BAD_TOKENS = [
    ({"name": "ab"}, "name", "invalid token name 'ab': use 5 to 50 letters, digits or hyphens",
     400),
    ({"name": "_mine"}, "name", "token name '_mine' is reserved: names starting with '_' "
     "belong to the system", 400),
    ({"name": ""}, "name", "A name is required", 400),
    ({"map_choice": "existing", "scope_map": "nowhere"}, "scope_map",
     "scope map 'nowhere' does not exist", 404),
    ({"map_choice": "existing", "scope_map": ""}, "scope_map",
     "choose a scope map, or create a new one", 400),
    ({"map_name": "MyScopeMap"}, "map_name", "scope map 'MyScopeMap' already exists", 409),
    ({"map_name": "_system"}, "map_name", "scope map name '_system' is reserved: names "
     "starting with '_' belong to the system", 400),
    ({"map_description": "d" * 1025}, "map_description",
     "the description is longer than 1024 characters", 400),
    # The reference's three invalid wildcards, worded as it words its rules.
    ({"repo-0": "sample/*/teamA"}, "repo-0", "invalid repository rule 'sample/*/teamA': a "
     "wildcard must end the rule as '/*' (for example 'samples/*')", 400),
    ({"repo-0": "sample/teamA*"}, "repo-0", "invalid repository rule 'sample/teamA*': a "
     "wildcard must end the rule as '/*' (for example 'samples/*')", 400),
    ({"repo-0": "sample/teamA/*/projectB/*"}, "repo-0", "invalid repository rule "
     "'sample/teamA/*/projectB/*': a rule may hold a single wildcard '*'", 400),
    ({"repo-0": "samples//hello"}, "repo-0", "invalid repository rule 'samples//hello': not a "
     "valid repository name", 400),
    ({"act-0": []}, "repo-0", "choose at least one permission for 'samples/hello-world'", 400),
    ({"act-0": ["content/read", "content/erase"]}, "repo-0", "repository rule "
     "'samples/hello-world': unknown action 'content/erase'", 400),
    ({"repo-0": ""}, "repo-0", "enter a repository for these permissions", 400),
    ({"repo-0": "", "act-0": []}, "repo-0", "add at least one repository with its permissions",
     400),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "message", "status"), BAD_TOKENS)
def test_bad_input_is_shown_next_to_its_field_and_makes_nothing(
    admin: Browser,
    fleet: Services,
    changes: dict[str, Any],
    field: str,
    message: str,
    status: int,
) -> None:
    before = _audit(fleet)
    answer = _create(admin, **changes)
    page = _text(answer)
    assert answer.status_code == status
    assert re.search(rf'<small id="err-{field}" class="error">{re.escape(message)}', page), page
    assert f'aria-invalid="true" aria-describedby="err-{field}"' in page
    form = {**NEW_MAP, **changes}
    for name in ("name", "map_name", "repo-0"):
        kept = rf'name="{name}"[^>]*value="{re.escape(form[name])}"'
        assert re.search(kept, page), name  # what was typed is kept
    assert fleet.tokens.list().items == () and _audit(fleet) == before
    assert _user_maps(fleet) == ["MyScopeMap"]


def test_a_taken_token_name_is_shown_next_to_the_name_and_makes_no_map(
    admin: Browser, fleet: Services
) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    answer = _create(admin)
    assert answer.status_code == 409
    assert '<small id="err-name" class="error">token \'MyToken\' already exists</small>' in _text(
        answer
    )
    assert _user_maps(fleet) == ["MyScopeMap"]


def test_a_tokens_page_shows_passwords_status_last_use_failures_and_rules(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    made = fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    fleet.health.login_ok("MyToken", "10.1.2.3")
    for _ in range(3):
        fleet.health.login_failed("MyToken", "10.9.9.9")
    fleet.health.flush()
    page = _text(admin.get("/ui/tokens/MyToken"))
    assert all(p.value and p.value not in page for p in made.passwords)
    assert "created-value" not in page
    details = page.split('id="details-title"')[1].split("</table>")[0]
    assert re.search(r"Last used</th><td><time [^>]+>[^<]+</time> from <code>10.1.2.3</code>",
                     details)  # fmt: skip
    assert re.search(r"Failed logins</th><td>3 · last <time [^>]+>[^<]+</time> from "
                     r"<code>10.9.9.9</code>", details)  # fmt: skip
    assert "enabled</span>" in details
    rules = page.split('id="map-title"')[1]
    assert "Sample scope map" in rules
    assert (
        '<th scope="row"><code>samples/hello-world</code></th><td>content/read, content/write</td>'
        in rules
    )
    passwords = page.split('id="passwords-title"')[1].split("</table>")[0]
    assert passwords.count("never") == 2  # both expiries
    assert passwords.count('aria-label="Generate password') == 2


def test_generate_a_password_shows_it_once_and_never_again(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", generate_passwords=False, actor="t")
    pane = _text(admin.get("/ui/tokens/MyToken/passwords/password1"))
    assert 'type="datetime-local"' in pane and "stops working at once" not in pane
    answer = _post(
        admin,
        "/ui/tokens/MyToken/passwords/password1",
        {"expires_at": "2026-01-31T12:00"},
        "/ui/tokens/MyToken/passwords/password1",
    )
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    page = _text(answer)
    found = VALUE.search(page)
    assert found and found.group(1).startswith("fltp_")
    value = found.group(1)
    assert "It will not be shown again:" in page
    assert 'data-copy="created-value"' in page and "copy.js" in page
    assert fleet.registry_auth.authenticate("MyToken", value) is not None
    (stored,) = fleet.tokens.show("MyToken").passwords
    assert stored.name == "password1" and stored.expiry is not None
    assert stored.expiry.isoformat() == "2026-01-31T12:00:00+00:00"
    assert _audit(fleet)[-1] == ("operator:alice", "token.credential.generate", "MyToken")

    later = _text(admin.get("/ui/tokens/MyToken"))
    assert value not in later and "created-value" not in later
    assert 'datetime="2026-01-31T12:00:00+00:00"' in later  # only its expiry

    again = _text(admin.get("/ui/tokens/MyToken/passwords/password1"))  # the second step
    assert "The current password1, created" in again and "stops working at once" in again
    assert '<button type="submit" class="danger">Generate</button>' in again
    regenerated = _post(admin, "/ui/tokens/MyToken/passwords/password1", {}, "/ui/tokens/MyToken")
    new_value = VALUE.search(_text(regenerated))
    assert regenerated.status_code == 201 and new_value and new_value.group(1) != value
    assert fleet.registry_auth.authenticate("MyToken", value) is None
    assert "It does not expire." in _text(regenerated)
    assert fleet.tokens.show("MyToken").passwords[0].expiry is None


BAD_EXPIRIES = [
    ("2025-12-31T23:00", "the expiry 2025-12-31T23:00:00+00:00 is not in the future"),
    ("next week", "the expiry is a time such as 2026-12-31T18:00 (UTC); got 'next week'"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_EXPIRIES)
def test_a_bad_expiry_generates_nothing(
    admin: Browser, fleet: Services, raw: str, message: str
) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", generate_passwords=False, actor="t")
    path = "/ui/tokens/MyToken/passwords/password2"
    answer = _post(admin, path, {"expires_at": raw}, path)
    page = _text(answer)
    assert answer.status_code == 400
    assert f'<p role="alert" class="error" id="generate-error">{message}</p>' in page
    assert f'value="{raw}"' in page and "created-value" not in page
    assert fleet.tokens.show("MyToken").passwords == ()
    assert admin.get("/ui/tokens/MyToken/passwords/password3").status_code == 404


def test_change_the_scope_map(admin: Browser, fleet: Services) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    path = "/ui/tokens/MyToken/scope-map"
    moved = _post(admin, path, {"scope_map": "_repositories_pull"}, "/ui/tokens/MyToken")
    assert moved.status_code == 303
    assert fleet.tokens.show("MyToken").scope_map == "_repositories_pull"
    assert _audit(fleet)[-1] == ("operator:alice", "token.update", "MyToken")
    page = _text(admin.get("/ui/tokens/MyToken"))
    assert "Token MyToken now uses scope map _repositories_pull." in page
    assert "(system-defined, read-only)" in page
    assert '<th scope="row"><code>*</code></th><td>content/read</td>' in page

    before = _audit(fleet)
    unknown = _post(admin, path, {"scope_map": "nowhere"}, "/ui/tokens/MyToken")
    assert unknown.status_code == 404
    assert (
        '<small id="err-scope_map" class="error">scope map \'nowhere\' does not exist</small>'
        in _text(unknown)
    )
    assert 'name="scope_map" list="maps" maxlength="64" autocomplete="off" value="nowhere"' in (
        _text(unknown)
    )
    empty = _post(admin, path, {"scope_map": ""}, "/ui/tokens/MyToken")
    assert empty.status_code == 400 and "A scope map is required" in _text(empty)
    assert fleet.tokens.show("MyToken").scope_map == "_repositories_pull"
    assert _audit(fleet) == before


def test_disable_asks_first_and_enable_brings_it_back(admin: Browser, fleet: Services) -> None:
    made = fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    value = made.passwords[0].value or ""
    confirm = _text(admin.get("/ui/tokens/MyToken/disable"))
    assert "Disable token MyToken?" in confirm
    assert "the registry refuses new logins with its passwords at once" in confirm
    assert '<button type="submit" class="danger">Disable</button>' in confirm
    assert fleet.tokens.show("MyToken").status == "enabled"  # asking changed nothing
    answer = admin.post("/ui/tokens/MyToken/disable", {})
    assert answer.status_code == 303 and fleet.tokens.show("MyToken").status == "disabled"
    assert fleet.registry_auth.authenticate("MyToken", value) is None
    assert _audit(fleet)[-1] == ("operator:alice", "token.update", "MyToken")
    page = _text(admin.get("/ui/tokens/MyToken"))
    # The setting's 300 s from 2026-01-01 00:00:00 (the clock's), plus the 60 s leeway.
    assert "Token MyToken is disabled. Registry access ends by 2026-01-01 00:06:01 UTC." in page
    assert ">Enable</button>" in page and 'id="registry-access">ends by' in page
    assert ">Disable</button>" not in page
    enabled = _post(admin, "/ui/tokens/MyToken/enable", {}, "/ui/tokens/MyToken")
    assert enabled.status_code == 303 and fleet.tokens.show("MyToken").status == "enabled"
    assert fleet.registry_auth.authenticate("MyToken", value) is not None


def test_delete_asks_first(admin: Browser, fleet: Services) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    confirm = _text(admin.get("/ui/tokens/MyToken/delete"))
    assert "Delete token MyToken?" in confirm and "Its scope map is kept." in confirm
    assert '<button type="submit" class="danger">Delete</button>' in confirm
    assert fleet.tokens.show("MyToken")
    gone = admin.post("/ui/tokens/MyToken/delete", {})
    assert gone.status_code == 303 and gone.headers["Location"] == "/ui/tokens"
    with pytest.raises(NotFoundError):
        fleet.tokens.show("MyToken")
    assert fleet.scope_maps.show("MyScopeMap")
    assert _audit(fleet)[-1] == ("operator:alice", "token.delete", "MyToken")
    listed = _text(admin.get("/ui/tokens"))
    assert "Token MyToken deleted. Registry access ends by 2026-01-01 00:06:01 UTC." in listed
    assert admin.get("/ui/tokens/MyToken").status_code == 404


def test_a_devices_token_is_shown_and_its_changes_are_pointed_to_the_device(
    admin: Browser, fleet: Services
) -> None:
    fleet.broker = FakeBroker()
    read = [RepositoryActions("edge/*", ("content/read",))]
    fleet.scope_maps.create("devices-read", read, actor="t")
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    secret = fleet.groups.create_secret("pilots-eu", actor="t").value or ""
    fleet.devices.enroll("rpi-0001", secret, *new_device("rpi-0001").keys)
    page = _text(admin.get("/ui/tokens/dev-rpi-0001"))
    assert "This token belongs to device <strong>rpi-0001</strong>" in page
    assert "<button" not in page.split("</header>", 1)[1].replace(
        '<button type="submit" class="secondary outline">Sign out</button>', ""
    )
    before = (_audit(fleet), fleet.tokens.show("dev-rpi-0001"))
    csrf = admin.csrf("/ui/tokens")
    refused = {
        "/ui/tokens/dev-rpi-0001/scope-map": ({"scope_map": "MyScopeMap"}, "its scope map "
                                              "comes from the device's group"),
        "/ui/tokens/dev-rpi-0001/delete": ({}, "delete the device instead"),
        "/ui/tokens/dev-rpi-0001/disable": ({}, "disable it as a device (fleet device "
                                            "disable --name rpi-0001)"),
        "/ui/tokens/dev-rpi-0001/enable": ({}, "enable it as a device"),
        "/ui/tokens/dev-rpi-0001/passwords/password2": ({}, "its passwords are rotated and "
                                                        "delivered by the server"),
    }  # fmt: skip
    for path, (form, message) in refused.items():
        answer = admin.client.post(path, data={"csrf_token": csrf, **form})
        assert answer.status_code == 409, path
        assert "token 'dev-rpi-0001' belongs to device 'rpi-0001': " + message in _text(answer)
    assert (_audit(fleet), fleet.tokens.show("dev-rpi-0001")) == before


def test_a_viewer_sees_everything_and_can_change_nothing(browser: Browser, fleet: Services) -> None:
    made = fleet.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    browser.sign_in("victor")
    listing = _text(browser.get("/ui/tokens"))
    assert "MyToken" in listing and "+Add a token" not in listing
    page = _text(browser.get("/ui/tokens/MyToken"))
    assert "samples/hello-world" in page and 'id="scope_map"' not in page
    assert "<button" not in page.split("</header>", 1)[1]  # no change button at all
    before = (_audit(fleet), fleet.tokens.show("MyToken"))
    token = browser.csrf("/ui/tokens")  # a real session's token: only the role is wrong
    forged = {
        "/ui/tokens/new": NEW_MAP,
        "/ui/tokens/MyToken/scope-map": {"scope_map": "_repositories_admin"},
        "/ui/tokens/MyToken/disable": {},
        "/ui/tokens/MyToken/enable": {},
        "/ui/tokens/MyToken/passwords/password1": {},
        "/ui/tokens/MyToken/delete": {},
    }
    for path, form in forged.items():
        answer = browser.client.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403, path
        assert "this needs the admin role" in _text(answer)
    for path in (
        "/ui/tokens/new",
        "/ui/tokens/MyToken/disable",
        "/ui/tokens/MyToken/passwords/password1",
        "/ui/tokens/MyToken/delete",
    ):
        assert browser.get(path).status_code == 403, path
    assert (_audit(fleet), fleet.tokens.show("MyToken")) == before
    assert fleet.registry_auth.authenticate("MyToken", made.passwords[0].value or "")


def test_a_post_without_the_csrf_token_is_refused(admin: Browser, fleet: Services) -> None:
    fleet.tokens.create("MyToken", scope_map="MyScopeMap", generate_passwords=False, actor="t")
    for path, form in (
        ("/ui/tokens/MyToken/passwords/password1", {}),
        ("/ui/tokens/new", {k: v for k, v in NEW_MAP.items() if k != "name"} | {"name": "Other"}),
        ("/ui/tokens/MyToken/delete", {}),
    ):
        answer = admin.client.post(path, data=form)
        assert answer.status_code == 400 and "CSRF token" in _text(answer), path
    assert fleet.tokens.show("MyToken").passwords == ()
    assert [t.name for t in fleet.tokens.list().items] == ["MyToken"]


def test_an_unknown_token_is_a_404_page(admin: Browser) -> None:
    answer = admin.get("/ui/tokens/Nowhere")
    assert answer.status_code == 404 and "token 'Nowhere' does not exist" in _text(answer)
