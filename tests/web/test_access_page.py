"""The access explainer page through the HTTP a browser sends: the form, the decision in
words with the matching rules and the map's table, why when denied, errors next to their
field, what a viewer sees, and a constant number of queries."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest
from sqlalchemy import func
from sqlmodel import select

from fleet.db.models import AuditEvent
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.support.statements import counted
from tests.web.conftest import Browser

ME = "test"


@pytest.fixture
def fleet(services: Services) -> Services:
    services.scope_maps.create(
        "reference-map",
        [
            RepositoryActions("sample/*", ("content/read",)),
            RepositoryActions("sample/teama/*", ("content/write",)),
            RepositoryActions("sample/teama/projectb", ("content/delete",)),
            RepositoryActions("other/x", ("metadata/read",)),
        ],
        actor=ME,
    )
    services.tokens.create("robot-1", scope_map="reference-map", actor=ME)
    return services


@pytest.fixture
def viewer(browser: Browser, fleet: Services) -> Browser:
    browser.sign_in("victor")
    return browser


def _page(browser: Browser, status: int = 200, **params: str) -> str:
    answer = browser.get("/ui/access?" + urlencode(params))
    assert answer.status_code == status, answer.get_data(as_text=True)
    return html.unescape(answer.get_data(as_text=True))


def _main(page: str) -> str:
    return page.split('<main id="main"', 1)[1]


def _text(fragment: str) -> str:
    spaced = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))
    return re.sub(r" ([.,;:])", r"\1", spaced).strip()


def _rows(page: str, table_class: str) -> list[str]:
    found = re.search(rf'<table class="{table_class}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert found, page
    return [_text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S)]


def test_the_empty_form_labels_every_control(viewer: Browser) -> None:
    page = _page(viewer)
    main = _main(page)
    for control in ('id="kind-token"', 'id="kind-scope_map"', 'id="name"', 'id="repository"'):
        assert control in main
    for label in ('for="kind-token"', 'for="kind-scope_map"', 'for="name"', 'for="repository"'):
        assert label in main
    assert '<label for="action">Action</label>' in main
    options = re.findall(r'<option value="([^"]+)"', main)
    assert options == [
        "content/read",
        "content/write",
        "content/delete",
        "metadata/read",
        "metadata/write",
    ]
    assert '<button type="submit">Explain</button>' in main
    assert 'method="get"' in main
    assert "<select" in main and '<input id="name" name="name"' in main  # a text input
    assert "Allowed" not in main and "Denied" not in main
    nav = page.split("</nav>", 1)[0]
    labels = re.findall(r'<li><a href="[^"]+"[^>]*>([^<]+)</a></li>', nav)
    assert labels[-2:] == ["Access", "Audit"]
    assert 'aria-current="page">Access</a>' in nav
    assert "style=" not in page and not re.search(r"<script(?![^>]*\bsrc=)", page)


def test_allowed_with_every_matching_rule_and_the_map_table(viewer: Browser) -> None:
    page = _page(
        viewer, kind="token", name="robot-1", repository="sample/teama/projectb",
        action="content/delete",
    )  # fmt: skip
    main = _main(page)
    assert '<h2 id="decision" class="decision allowed">Allowed</h2>' in main
    assert "Token robot-1 may do content/delete on sample/teama/projectb." in _text(main)
    assert _rows(main, "matched") == [
        "sample/* content/read no",
        "sample/teama/* content/write no",
        "sample/teama/projectb content/delete yes",
    ]
    assert _rows(main, "map-rules") == [
        "other/x metadata/read no",
        "sample/* content/read matches",
        "sample/teama/* content/write matches",
        "sample/teama/projectb content/delete matches, grants content/delete",
    ]
    assert main.count('<tr class="match">') == 3
    assert "password1: signs in; does not expire" in _text(main)
    assert "Why" not in main
    # The token and its map lead to their pages.
    assert '<a href="/ui/tokens/robot-1">robot-1</a>' in main
    assert '<a href="/ui/scope-maps/reference-map">reference-map</a>' in main
    # The form keeps what was asked.
    assert 'value="sample/teama/projectb"' in main
    assert '<option value="content/delete" selected>' in main


def test_denied_says_why(viewer: Browser, fleet: Services) -> None:
    main = _main(_page(viewer, name="robot-1", repository="nobody/x", action="content/read"))
    assert '<h2 id="decision" class="decision denied">Denied</h2>' in main
    assert "Token robot-1 may not do content/read on nobody/x." in _text(main)
    assert "no rule of scope map 'reference-map' matches repository 'nobody/x'" in main
    assert "No rule of reference-map matches nobody/x." in main

    fleet.tokens.update("robot-1", status="disabled", actor=ME)
    main = _main(_page(viewer, name="robot-1", repository="sample/x", action="content/read"))
    assert "Denied" in main
    why = re.search(r'<ul class="reasons">(.*?)</ul>', main, re.S)
    assert why
    assert _text(why.group(1)) == (
        "token 'robot-1' is disabled: it is denied everything, whatever its scope map grants"
    )
    assert "Status: disabled" in _text(main)
    assert "password1: cannot sign in" in _text(main)
    assert _rows(main, "matched") == ["sample/* content/read yes"]  # what it would grant


def test_a_scope_map_on_its_own(viewer: Browser) -> None:
    main = _main(
        _page(viewer, kind="scope_map", name="_repositories_pull", repository="any/thing",
              action="content/write")
    )  # fmt: skip
    assert "Denied" in main
    assert "Scope map _repositories_pull may not do content/write on any/thing." in _text(main)
    assert _rows(main, "matched") == ["* content/read no"]
    assert '<input type="radio" id="kind-scope_map" name="kind" value="scope_map" checked>' in main


BAD = [
    ({"name": "no-such-token", "repository": "a"}, "name", "token 'no-such-token' does not exist",
     404),
    ({"kind": "scope_map", "name": "no-such-map", "repository": "a"}, "name",
     "scope map 'no-such-map' does not exist", 404),
    ({"name": "", "repository": "a"}, "name", "A token name is required", 400),
    ({"name": "robot-1", "repository": ""}, "repository", "A repository name is required", 400),
    ({"name": "robot-1", "repository": "Sample/X"}, "repository",
     "invalid repository name 'Sample/X'", 400),
    ({"name": "robot-1", "repository": "x" * 5000}, "repository",
     "a repository name is at most 255 characters (got 256)", 400),
    ({"name": "t" * 500, "repository": "a"}, "name",
     "a token name is at most 64 characters (got 65)", 400),
    ({"name": "robot-1", "repository": "a", "action": "pull"}, "action", "unknown action 'pull'",
     400),
    ({"kind": "device", "name": "robot-1", "repository": "a"}, "kind",
     "Choose a token or a scope map", 400),
]  # fmt: skip


@pytest.mark.parametrize(("params", "field", "message", "status"), BAD)
def test_bad_input_is_shown_next_to_its_field_and_changes_nothing(
    viewer: Browser,
    fleet: Services,
    params: dict[str, str],
    field: str,
    message: str,
    status: int,
) -> None:
    before = _audit_count(fleet)
    main = _main(_page(viewer, status, **{"action": "content/read", **params}))
    shown = re.search(rf'<small id="err-{field}" class="error">([^<]*)</small>', main)
    assert shown, main
    assert shown.group(1).startswith(message)
    assert "Nothing was explained" in main
    assert 'id="decision"' not in main
    if field in ("name", "repository"):
        assert f'aria-describedby="err-{field}"' in main
    if params.get("name") and len(params["name"]) < 100:
        assert f'value="{params["name"]}"' in main  # kept
    assert _audit_count(fleet) == before


def _audit_count(services: Services) -> int:
    with services.ctx.db.session() as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


def test_signed_out_is_sent_to_sign_in_and_post_is_refused(browser: Browser) -> None:
    answer = browser.get("/ui/access?name=robot-1&repository=a")
    assert answer.status_code == 302 and "/ui/sign-in" in answer.headers["Location"]
    browser.sign_in("alice")
    token = browser.csrf("/ui/access")
    assert browser.client.post("/ui/access", data={"csrf_token": token}).status_code == 405


def test_the_page_costs_the_same_queries_whatever_the_map(viewer: Browser, fleet: Services) -> None:
    big = [RepositoryActions(f"team{i}/*", ("content/read",)) for i in range(300)]
    fleet.scope_maps.create("big-map", big, actor=ME)
    fleet.tokens.create("robot-2", scope_map="big-map", actor=ME)
    counts = []
    for name in ("robot-1", "robot-2"):
        with counted(fleet) as seen:
            main = _main(_page(viewer, name=name, repository="team7/x", action="content/read"))
        counts.append(len(seen))
    assert counts[0] == counts[1]
    assert main.count("<tr") == 1 + 1 + 1 + 300  # matched table: head + 1; map table: head + 300
