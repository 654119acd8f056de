"""The audit log page: filters kept in the URL, keyset pages both ways, CSV and JSON lines."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest

from fleet.services import Services
from fleet.services.audit import AuditFilter
from fleet.services.context import audit
from tests.conftest import FakeClock
from tests.web.conftest import Browser

ROW = re.compile(r"<td>([^<]*)</td>\s*<td><code>([^<]*)</code></td>\s*<td>([^<]*)</td>")


def _record(services: Services, clock: FakeClock, count: int, actor: str = "robot") -> None:
    with services.ctx.db.session() as s:
        for n in range(count):
            clock.advance(seconds=1)
            audit(s, services.ctx, actor, "token.update", f"tok-{n:03d}", n=n)


def _rows(html: str) -> list[tuple[str, str, str]]:
    return ROW.findall(html)


def test_pages_walk_newest_first_with_next_and_previous(
    browser: Browser, services: Services, clock: FakeClock
) -> None:
    _record(services, clock, 120)
    browser.sign_in()
    first = browser.get("/ui/audit?actor=robot").get_data(as_text=True)
    targets = [t for _, _, t in _rows(first)]
    assert targets == [f"tok-{n:03d}" for n in range(119, 69, -1)]  # 50 a page
    assert 'rel="prev"' not in first
    after = re.search(r'href="([^"]+)" rel="next"', first)
    assert after
    second = browser.get(after.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert [t for _, _, t in _rows(second)] == [f"tok-{n:03d}" for n in range(69, 19, -1)]
    back = re.search(r'href="([^"]+)" rel="prev"', second)
    assert back and "actor=robot" in back.group(1)
    again = browser.get(back.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert [t for _, _, t in _rows(again)] == targets


def test_filters_are_exact_prefix_and_time(
    browser: Browser, services: Services, clock: FakeClock
) -> None:
    start = clock.now
    _record(services, clock, 5, actor="robot")
    _record(services, clock, 3, actor="operator:alice")
    view = services.audit.page(AuditFilter(actor="operator:alice"))
    assert [e.target for e in view.events] == ["tok-002", "tok-001", "tok-000"]
    view = services.audit.page(AuditFilter(actor="robot", target="tok-00"))
    assert len(view.events) == 5
    view = services.audit.page(AuditFilter(target="tok-%"))  # % is no wildcard
    assert view.events == ()
    until = start + timedelta(seconds=2)
    view = services.audit.page(AuditFilter(actor="robot", until=until))
    assert [e.target for e in view.events] == ["tok-001", "tok-000"]
    browser.sign_in()
    since = (start + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    page = browser.get(f"/ui/audit?actor=robot&since={since}").get_data(as_text=True)
    assert [t for _, _, t in _rows(page)] == ["tok-004"]
    assert f'value="{since}"' in page  # the filter bar keeps its state


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "before=-3",
        "limit=100000",
        "before=1&after=2",
        "actor=" + "x" * 300,
        "limit=%C2%B2",  # '²': str.isdigit() holds, int() refuses
        "before=" + "9" * 5000,  # longer than int() parses by default
    ],
)
def test_bad_filters_are_a_400_page(browser: Browser, query: str) -> None:
    browser.sign_in()
    answer = browser.get(f"/ui/audit?{query}")
    assert answer.status_code == 400 and "<h1>400" in answer.get_data(as_text=True)


def test_downloads_hold_every_matching_event_and_no_formula(
    browser: Browser, services: Services, clock: FakeClock
) -> None:
    _record(services, clock, 1200)
    with services.ctx.db.session() as s:
        audit(s, services.ctx, "robot", "token.update", "=HYPERLINK(1)")
    browser.sign_in()
    answer = browser.get("/ui/audit.csv?actor=robot")
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="fleet-audit-')
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == 1201 and rows[0]["target"] == "'=HYPERLINK(1)"
    assert rows[-1]["target"] == "tok-000" and json.loads(rows[-1]["detail"]) == {"n": 0}
    lines = browser.get("/ui/audit.jsonl?actor=robot").get_data(as_text=True).splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 1201 and events[0]["target"] == "=HYPERLINK(1)"
    assert {e["actor"] for e in events} == {"robot"}
