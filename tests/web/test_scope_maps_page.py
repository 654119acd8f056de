"""The Scope maps pages through the HTTP a browser sends: the paged list, +Add, a map's page
with its rules and tokens, editing as the reference's portal does (add a repository, uncheck a
permission, Save), Delete, system-defined maps read-only, and what a viewer may not do."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from fleet.domain.errors import NotFoundError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.support.statements import counted
from tests.web.conftest import Browser
from tests.web.test_groups_page import _audit

HELLO = [RepositoryActions("samples/hello-world", ("content/read", "content/write"))]
NEW = {
    "name": "MyScopeMap",
    "description": "Sample scope map",
    "rows": "1",
    "repo-0": "samples/hello-world",
    "act-0": ["content/write", "content/read"],
}


@pytest.fixture
def admin(browser: Browser, services: Services) -> Browser:
    browser.sign_in("alice")
    return browser


def _text(answer: Any) -> str:
    return html.unescape(answer.get_data(as_text=True))


def _post(browser: Browser, path: str, data: dict[str, Any], csrf_from: str) -> Any:
    return browser.client.post(path, data={"csrf_token": browser.csrf(csrf_from), **data})


def _user_maps(services: Services) -> list[str]:
    return [m.name for m in services.scope_maps.list().items if not m.name.startswith("_")]


def _edit_form(page: str) -> dict[str, Any]:
    """The edit form's fields as the page holds them (what a browser would send back)."""
    form: dict[str, Any] = {"rows": re.search(r'name="rows" value="(\d+)"', page).group(1)}  # type: ignore[union-attr]
    form["description"] = re.search(r'id="description" name="description"[^>]*value="([^"]*)"',
                                    page).group(1)  # type: ignore[union-attr]  # fmt: skip
    if revision := re.search(r'name="revision" value="([0-9a-f]*)"', page):
        form["revision"] = revision.group(1)
    for i, repository in re.findall(r'id="repo-(\d+)" name="repo-\d+" value="([^"]*)"', page):
        form[f"repo-{i}"] = repository
        form[f"act-{i}"] = re.findall(rf'name="act-{i}" value="([^"]+)"[^>]*checked', page)
    return form


def test_the_list_shows_system_maps_first_and_pages_in_constant_queries(
    admin: Browser, services: Services
) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, "Sample scope map", actor="t")
    page = _text(admin.get("/ui/scope-maps"))
    names = re.findall(r'<th scope="row"><a href="/ui/scope-maps/([^"]+)">', page)
    assert names == [
        "_repositories_admin",
        "_repositories_pull",
        "_repositories_pull_metadata_read",
        "_repositories_push",
        "_repositories_push_metadata_write",
        "MyScopeMap",
    ]
    row = page.split('href="/ui/scope-maps/MyScopeMap">MyScopeMap</a></th>')[1].split("</tr>")[0]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
    assert cells[0] == "UserDefined" and cells[2] == "Sample scope map"
    assert cells[3] == "1 repository, 2 permission(s)"
    assert "SystemDefined" in page and "+Add a scope map" in page
    assert 'aria-current="page">Scope maps</a>' in page

    with counted(services) as few:
        admin.get("/ui/scope-maps")
    for n in range(50):
        services.scope_maps.create(f"map-{n:03d}", HELLO, actor="t")
    with counted(services) as full:
        first = _text(admin.get("/ui/scope-maps"))
    assert len(full) == len(few)
    assert len(re.findall(r'<th scope="row"><a href="/ui/scope-maps/', first)) == 50
    next_link = first.split('" rel="next"')[0].rsplit('href="', 1)[1]
    second = _text(admin.get(next_link))
    assert re.findall(r'<th scope="row"><a href="/ui/scope-maps/([^"]+)">', second) == [
        f"map-{n:03d}" for n in range(44, 50)
    ]
    prev_link = second.split('" rel="prev"')[0].rsplit('href="', 1)[1]
    back = _text(admin.get(prev_link))
    assert back.count('<th scope="row"><a href="/ui/scope-maps/') == 50 and 'rel="prev"' not in back


def test_a_system_defined_map_is_shown_read_only(admin: Browser, services: Services) -> None:
    services.tokens.create("Puller", scope_map="_repositories_pull", actor="t")
    page = _text(admin.get("/ui/scope-maps/_repositories_pull"))
    assert "System-defined: read-only" in page
    assert '<th scope="row"><code>*</code></th><td>content/read</td>' in page
    assert 'href="/ui/tokens/Puller">Puller</a>' in page
    assert "<button" not in page.split("</header>", 1)[1]  # no Save, no Delete
    before = (_audit(services), services.scope_maps.show("_repositories_pull"))
    forged = _post(
        admin,
        "/ui/scope-maps/_repositories_pull",
        {"rows": "1", "repo-0": "*", "act-0": ["content/read", "content/delete"]},
        "/ui/scope-maps",
    )
    assert forged.status_code == 403
    assert "scope map '_repositories_pull' is system-defined and cannot be changed" in _text(forged)
    deleted = _post(admin, "/ui/scope-maps/_repositories_pull/delete", {}, "/ui/scope-maps")
    assert deleted.status_code == 403
    assert (_audit(services), services.scope_maps.show("_repositories_pull")) == before


def test_create_a_scope_map(admin: Browser, services: Services) -> None:
    answer = _post(admin, "/ui/scope-maps/new", NEW, "/ui/scope-maps/new")
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/scope-maps/MyScopeMap"
    made = services.scope_maps.show("MyScopeMap")
    assert made.description == "Sample scope map"
    assert made.entries == (
        ("samples/hello-world", "content/read"),
        ("samples/hello-world", "content/write"),
    )
    assert _audit(services)[-1] == ("operator:alice", "scope-map.create", "MyScopeMap")
    page = _text(admin.get("/ui/scope-maps/MyScopeMap"))
    assert "Scope map MyScopeMap created." in page and "No token uses this scope map." in page


BAD_MAPS = [
    ({"name": "abc"}, "name", "invalid scope map name 'abc': use 5 to 50 letters, digits or "
     "hyphens", 400),
    ({"name": "_repositories_mine"}, "name", "scope map name '_repositories_mine' is reserved",
     400),
    ({"name": ""}, "name", "A name is required", 400),
    ({"description": "d" * 1025}, "description", "the description is longer than 1024 "
     "characters", 400),
    ({"repo-0": "sample/*/teamA"}, "repo-0", "invalid repository rule 'sample/*/teamA': a "
     "wildcard must end the rule as '/*' (for example 'samples/*')", 400),
    ({"repo-0": "sample/teamA*"}, "repo-0", "invalid repository rule 'sample/teamA*': a "
     "wildcard must end the rule as '/*' (for example 'samples/*')", 400),
    ({"repo-0": "sample/teamA/*/projectB/*"}, "repo-0", "invalid repository rule "
     "'sample/teamA/*/projectB/*': a rule may hold a single wildcard '*'", 400),
    ({"repo-0": "", "act-0": []}, "repo-0", "add at least one repository with its permissions",
     400),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "message", "status"), BAD_MAPS)
def test_bad_input_is_shown_next_to_its_field_and_makes_nothing(
    admin: Browser,
    services: Services,
    changes: dict[str, Any],
    field: str,
    message: str,
    status: int,
) -> None:
    before = _audit(services)
    answer = _post(admin, "/ui/scope-maps/new", {**NEW, **changes}, "/ui/scope-maps/new")
    page = _text(answer)
    assert answer.status_code == status
    assert re.search(rf'<small id="err-{field}" class="error">{re.escape(message)}', page), page
    assert f'aria-invalid="true" aria-describedby="err-{field}"' in page
    form = {**NEW, **changes}
    assert re.search(rf'name="repo-0" value="{re.escape(form["repo-0"])}"', page)
    assert _user_maps(services) == [] and _audit(services) == before


def test_a_taken_name_and_a_second_wrong_row_are_each_shown_where_they_are(
    admin: Browser, services: Services
) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, actor="t")
    taken = _post(admin, "/ui/scope-maps/new", NEW, "/ui/scope-maps/new")
    assert taken.status_code == 409
    assert (
        '<small id="err-name" class="error">scope map \'MyScopeMap\' already exists</small>'
        in _text(taken)
    )
    rows = {**NEW, "name": "Other-map", "rows": "2", "repo-1": "sample/teamA*",
            "act-1": ["content/read"]}  # fmt: skip
    wrong = _text(_post(admin, "/ui/scope-maps/new", rows, "/ui/scope-maps/new"))
    assert 'id="err-repo-0"' not in wrong and 'id="err-repo-1"' in wrong
    assert _user_maps(services) == ["MyScopeMap"]


def test_edit_a_map_as_the_reference_does(admin: Browser, services: Services) -> None:
    """Add samples/nginx with content/read and content/write, take content/write off
    samples/hello-world, Save: every token on the map has the new permissions at once."""
    services.scope_maps.create("MyScopeMap", HELLO, "Sample scope map", actor="t")
    made = services.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    page = _text(admin.get("/ui/scope-maps/MyScopeMap"))
    form = _edit_form(page)
    assert form["rows"] == "2" and form["repo-0"] == "samples/hello-world" and form["repo-1"] == ""
    assert sorted(form["act-0"]) == ["content/read", "content/write"]
    assert 'href="/ui/tokens/MyToken">MyToken</a>' in page

    added = _post(admin, "/ui/scope-maps/MyScopeMap", {**form, "add_row": "1"}, "/ui/scope-maps")
    assert added.status_code == 200 and 'name="rows" value="3"' in _text(added)
    assert services.scope_maps.show("MyScopeMap").entries == (
        ("samples/hello-world", "content/read"),
        ("samples/hello-world", "content/write"),
    )
    form.update({"repo-1": "samples/nginx", "act-1": ["content/read", "content/write"]})
    form["act-0"] = ["content/read"]
    form["description"] = "Hello read, nginx push"
    saved = _post(admin, "/ui/scope-maps/MyScopeMap", form, "/ui/scope-maps")
    assert saved.status_code == 303
    after = services.scope_maps.show("MyScopeMap")
    assert after.entries == (
        ("samples/hello-world", "content/read"),
        ("samples/nginx", "content/read"),
        ("samples/nginx", "content/write"),
    )
    assert after.description == "Hello read, nginx push"
    assert _audit(services)[-1] == ("operator:alice", "scope-map.update", "MyScopeMap")
    principal = services.registry_auth.authenticate("MyToken", made.passwords[0].value or "")
    assert principal is not None
    assert sorted(principal.allowed("samples/nginx")) == ["content/read", "content/write"]
    assert sorted(principal.allowed("samples/hello-world")) == ["content/read"]
    shown = _text(admin.get("/ui/scope-maps/MyScopeMap"))
    assert "every token using it has the new permissions now" in shown

    audited = len(_audit(services))
    same = _post(admin, "/ui/scope-maps/MyScopeMap", _edit_form(shown), "/ui/scope-maps")
    assert same.status_code == 303 and len(_audit(services)) == audited
    assert "Nothing changed." in _text(admin.get("/ui/scope-maps/MyScopeMap"))

    emptied = _edit_form(shown)
    emptied.update({"act-0": [], "act-1": []})  # unchecking every permission removes the rows
    assert _post(admin, "/ui/scope-maps/MyScopeMap", emptied, "/ui/scope-maps").status_code == 303
    assert services.scope_maps.show("MyScopeMap").entries == ()


def test_a_save_from_a_stale_page_undoes_nothing_another_operator_saved(
    admin: Browser, services: Services
) -> None:
    """Alice opens the map; Bob adds samples/nginx; Alice adds samples/redis and saves. The
    form sends the whole wanted set, so her save removed Bob's rule without a word. It is now
    a 409 that saves nothing and shows the map as it is, and her next save keeps both."""
    services.scope_maps.create("MyScopeMap", HELLO, actor="t")
    stale = _edit_form(_text(admin.get("/ui/scope-maps/MyScopeMap")))
    services.scope_maps.update(
        "MyScopeMap", add=[RepositoryActions("samples/nginx", ("content/read",))], actor="bob"
    )
    bobs = services.scope_maps.show("MyScopeMap")
    stale.update({"repo-1": "samples/redis", "act-1": ["content/read"]})
    refused = _post(admin, "/ui/scope-maps/MyScopeMap", stale, "/ui/scope-maps")
    assert refused.status_code == 409
    page = _text(refused)
    assert "was changed by someone else since you opened it, so nothing was saved" in page
    assert services.scope_maps.show("MyScopeMap") == bobs
    fresh = _edit_form(page)
    assert "samples/nginx" in fresh.values()
    blank = int(fresh["rows"]) - 1  # the page's empty row for a new repository
    fresh.update({f"repo-{blank}": "samples/redis", f"act-{blank}": ["content/read"]})
    assert _post(admin, "/ui/scope-maps/MyScopeMap", fresh, "/ui/scope-maps").status_code == 303
    repositories = {r for r, _ in services.scope_maps.show("MyScopeMap").entries}
    assert repositories == {"samples/hello-world", "samples/nginx", "samples/redis"}


def test_a_wrong_row_in_an_edit_is_shown_next_to_it_and_changes_nothing(
    admin: Browser, services: Services
) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, actor="t")
    form = _edit_form(_text(admin.get("/ui/scope-maps/MyScopeMap")))
    form.update({"act-0": ["content/read"], "repo-1": "samples/*/x", "act-1": ["content/read"]})
    before = (_audit(services), services.scope_maps.show("MyScopeMap"))
    answer = _post(admin, "/ui/scope-maps/MyScopeMap", form, "/ui/scope-maps")
    assert answer.status_code == 400
    page = _text(answer)
    assert (
        '<small id="err-repo-1" class="error">invalid repository rule \'samples/*/x\': a '
        "wildcard must end the rule as '/*' (for example 'samples/*')</small>" in page
    )
    assert re.search(r'name="act-0" value="content/write"(?![^>]*checked)', page)  # kept
    assert (_audit(services), services.scope_maps.show("MyScopeMap")) == before


def test_a_group_maps_refusal_to_grant_writing_is_shown(admin: Browser, services: Services) -> None:
    read = [RepositoryActions("edge/*", ("content/read",))]
    services.scope_maps.create("devices-read", read, actor="t")
    services.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    form = _edit_form(_text(admin.get("/ui/scope-maps/devices-read")))
    form["act-0"] = ["content/read", "content/write"]
    answer = _post(admin, "/ui/scope-maps/devices-read", form, "/ui/scope-maps")
    assert answer.status_code == 400
    assert (
        "scope map 'devices-read' serves device group 'pilots-eu', whose devices may only read: "
        "it cannot grant content/write" in _text(answer)
    )
    assert services.scope_maps.show("devices-read").entries == (("edge/*", "content/read"),)


def test_the_tokens_using_a_map_are_paged(admin: Browser, services: Services) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, actor="t")
    for n in range(52):
        services.tokens.create(f"Token-{n:03d}", scope_map="MyScopeMap", actor="t")
    first = _text(admin.get("/ui/scope-maps/MyScopeMap"))
    assert first.count('href="/ui/tokens/Token-') == 50
    next_link = first.split('" rel="next"')[0].rsplit('href="', 1)[1]
    second = _text(admin.get(next_link))
    assert re.findall(r'href="/ui/tokens/(Token-\d+)"', second) == ["Token-050", "Token-051"]


def test_delete_says_which_tokens_lose_their_permissions(
    admin: Browser, services: Services
) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, actor="t")
    services.tokens.create("MyToken", scope_map="MyScopeMap", actor="t")
    confirm = _text(admin.get("/ui/scope-maps/MyScopeMap/delete"))
    assert "Delete scope map MyScopeMap?" in confirm
    assert "Tokens that use it are left with no permissions: MyToken." in confirm
    assert '<button type="submit" class="danger">Delete</button>' in confirm
    assert services.scope_maps.show("MyScopeMap")  # asking changed nothing
    gone = admin.post("/ui/scope-maps/MyScopeMap/delete", {})
    assert gone.status_code == 303 and gone.headers["Location"] == "/ui/scope-maps"
    with pytest.raises(NotFoundError):
        services.scope_maps.show("MyScopeMap")
    assert services.tokens.show("MyToken").scope_map is None
    assert _audit(services)[-1] == ("operator:alice", "scope-map.delete", "MyScopeMap")
    assert "1 token(s) are left with no permissions." in _text(admin.get("/ui/scope-maps"))
    token_page = _text(admin.get("/ui/tokens/MyToken"))
    assert "This token has no scope map: it may do nothing." in token_page


def test_a_viewer_sees_everything_and_can_change_nothing(
    browser: Browser, services: Services
) -> None:
    services.scope_maps.create("MyScopeMap", HELLO, "Sample scope map", actor="t")
    browser.sign_in("victor")
    listing = _text(browser.get("/ui/scope-maps"))
    assert "MyScopeMap" in listing and "+Add a scope map" not in listing
    page = _text(browser.get("/ui/scope-maps/MyScopeMap"))
    assert "<code>samples/hello-world</code></th><td>content/read, content/write</td>" in page
    assert "<button" not in page.split("</header>", 1)[1] and 'id="repo-0"' not in page
    before = (_audit(services), services.scope_maps.show("MyScopeMap"))
    token = browser.csrf("/ui/scope-maps")
    for path, form in (
        ("/ui/scope-maps/new", {**NEW, "name": "Other-map"}),
        ("/ui/scope-maps/MyScopeMap", {"rows": "1", "repo-0": "*", "act-0": "content/delete"}),
        ("/ui/scope-maps/MyScopeMap/delete", {}),
    ):
        answer = browser.client.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403, path
    for path in ("/ui/scope-maps/new", "/ui/scope-maps/MyScopeMap/delete"):
        assert browser.get(path).status_code == 403, path
    assert (_audit(services), services.scope_maps.show("MyScopeMap")) == before
    no_csrf = browser.client.post("/ui/scope-maps/MyScopeMap/delete", data={})
    assert no_csrf.status_code == 400


def test_an_unknown_map_is_a_404_page(admin: Browser) -> None:
    answer = admin.get("/ui/scope-maps/nowhere")
    assert answer.status_code == 404 and "scope map 'nowhere' does not exist" in _text(answer)
