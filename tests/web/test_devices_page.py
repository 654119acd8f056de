"""The Devices list and a device's page through the HTTP a browser sends: search, filters,
sorts and pages, each action with its confirmation step, bulk disable, and what a viewer
may not do."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from fleet.db.models import AuditEvent
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker
from tests.web.conftest import Browser

READ = ("content/read", "metadata/read")
ROW = re.compile(r'<th scope="row"><a id="dev-([A-Za-z0-9-]+)" href="/ui/devices/\1">')
NEXT = re.compile(r'href="(/ui/devices\?[^"]*cursor=[^"]+)" rel="next"')


@pytest.fixture
def fleet(services: Services) -> Services:
    services.broker = FakeBroker()
    services.scope_maps.create("devices-read", [RepositoryActions("edge/*", READ)], actor="test")
    services.groups.create("pilots", scope_map="devices-read", actor="test")
    services.groups.create("others", scope_map="devices-read", actor="test")
    return services


@pytest.fixture
def admin(browser: Browser, fleet: Services) -> Browser:
    browser.sign_in("alice")
    return browser


@pytest.fixture
def viewer(browser: Browser, fleet: Services) -> Browser:
    browser.sign_in("victor")
    return browser


def enroll(services: Services, group: str, *device_ids: str) -> None:
    value = services.groups.create_secret(group, actor="test").value or ""
    for device_id in device_ids:
        services.devices.enroll(device_id, value, *new_device(device_id).keys)


def _text(answer: Any) -> str:
    return html.unescape(answer.get_data(as_text=True))


def listed(page: str) -> list[str]:
    return ROW.findall(page)


def walk(browser: Browser, path: str) -> list[list[str]]:
    """Every page of a list view, following its Next links."""
    pages: list[list[str]] = []
    for _ in range(1000):
        answer = browser.get(path)
        assert answer.status_code == 200, _text(answer)
        page = answer.get_data(as_text=True)
        pages.append(listed(page))
        found = NEXT.search(page)
        if found is None:
            return pages
        path = html.unescape(found.group(1))
    raise AssertionError("the walk never ended")


def _audit(services: Services) -> list[tuple[str, str, str, str]]:
    with services.ctx.db.session() as s:
        rows = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        return [(e.actor, e.action, e.target, e.detail) for e in rows]


@contextmanager
def counted(services: Services) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    engine = services.ctx.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


# -- the list ------------------------------------------------------------------------------
def test_search_by_id_prefix(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-0002", "pi-0010", "Pi-0003", "rpi-0001", "pix")
    page = _text(admin.get("/ui/devices"))
    assert 'aria-current="page">Devices</a>' in page
    assert '<label for="f-q">Device id starts with</label>' in page
    assert '<input id="f-q" name="q"' in page and '<button type="submit">Search</button>' in page
    assert listed(page) == ["Pi-0003", "pi-0001", "pi-0002", "pi-0010", "pix", "rpi-0001"]
    for q, ids in {
        "pi-": ["pi-0001", "pi-0002", "pi-0010"],
        "pi-000": ["pi-0001", "pi-0002"],
        "pi-0010": ["pi-0010"],
        "pi": ["pi-0001", "pi-0002", "pi-0010", "pix"],
        "P": ["Pi-0003"],  # case counts: device ids are compared as written
        "z": [],
        "pi-00100": [],
    }.items():
        found = _text(admin.get(f"/ui/devices?q={q}"))
        assert listed(found) == ids, q
        assert f'name="q" maxlength="46" value="{q}"' in found
    assert "No device matches these filters." in _text(admin.get("/ui/devices?q=z"))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("q=pi%25", "a device id prefix has only letters, digits and hyphens (got 'pi%')"),
        ("q=pi_", "a device id prefix has only letters, digits and hyphens (got 'pi_')"),
        ("q=" + "a" * 5000, "the device id prefix has at most 46 characters (got 5000)"),
        ("status=asleep", "invalid status 'asleep': expected pending, active, disabled"),
        ("sort=colour", "invalid sort 'colour': expected device_id, last_seen, expiry, enrolled"),
        ("dir=up", "invalid direction 'up': expected asc or desc"),
        ("expiring=yes", "'expiring' is 1 (or absent), not 'yes'"),
        ("group=" + "g" * 65, "a group name has 1 to 64 characters"),
        ("cursor=abc", "the cursor is not valid for this list"),
    ],
)
def test_bad_input_gets_a_clear_error(
    admin: Browser, fleet: Services, query: str, message: str
) -> None:
    enroll(fleet, "pilots", "pi-0001")
    answer = admin.get(f"/ui/devices?{query}")
    assert answer.status_code == 400
    page = _text(answer)
    assert f'<p role="alert" class="error" id="list-error">{message}' in page
    assert listed(page) == []
    assert len(page) < 20_000  # a huge parameter is not echoed back whole


# -- the device page and its actions ---------------------------------------------------------
def test_the_device_page_shows_its_state_and_timeline(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    enroll(fleet, "pilots", "pi-0001")
    status(fleet, "pi-0001", type="ack", kind="credentials", version=1, slot="password1")
    page = _text(admin.get("/ui/devices/pi-0001"))
    assert "<h1>Device pi-0001</h1>" in page
    assert '<span id="device-status">active</span>' in page
    assert '<a href="/ui/groups/pilots">pilots</a>' in page
    assert "<code>dev-pi-0001</code>" in page
    assert "<code>device.enroll</code>" in page  # the timeline
    assert 'aria-current="page">Devices</a>' in page
    for button in ("Disable", "Rotate now", "Pull now", "Allow re-enroll", "Delete"):
        assert f">{button}</button>" in page, button
    assert ">Enable</button>" not in page
    assert '<label for="reason-disable">Reason</label>' in page
    assert admin.get("/ui/devices/nobody").status_code == 404


def test_disable_asks_first_then_enable_brings_it_back(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001")
    confirm = admin.get("/ui/devices/pi-0001/disable?reason=lost+in+the+field")
    text = _text(confirm)
    assert confirm.status_code == 200 and "Disable pi-0001?" in text
    assert "pi-0001: registry token dev-pi-0001 disabled: the registry refuses it" in text
    assert "Reason, kept in the audit log: lost in the field" in text
    assert '<input type="hidden" name="reason" value="lost in the field">' in text
    assert '<button type="submit" class="danger">Disable</button>' in text
    assert fleet.devices.show("pi-0001").status == "active"  # asking changed nothing

    answer = admin.post(
        "/ui/devices/pi-0001/disable",
        {"reason": "lost in the field"},
        csrf_from="/ui/devices/pi-0001/disable?reason=x",
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/devices/pi-0001"
    assert fleet.devices.show("pi-0001").status == "disabled"
    assert fleet.tokens.show("dev-pi-0001").status == "disabled"
    who, action, target, detail = _audit(fleet)[-1]
    assert (who, action, target) == ("operator:alice", "device.disable", "pi-0001")
    assert '"reason": "lost in the field"' in detail
    page = _text(admin.get("/ui/devices/pi-0001"))
    assert '<span id="device-status">disabled</span>' in page
    assert "pi-0001 disabled: its registry token and broker login are cut." in page
    assert ">Enable</button>" in page and ">Disable</button>" not in page
    assert "reason=lost in the field" in page  # the timeline shows why

    confirm = _text(admin.get("/ui/devices/pi-0001/enable"))
    assert "Enable pi-0001?" in confirm
    assert '<button type="submit" class="danger">Enable</button>' in confirm
    assert fleet.devices.show("pi-0001").status == "disabled"
    answer = admin.post("/ui/devices/pi-0001/enable", {})
    assert answer.status_code == 303
    assert fleet.devices.show("pi-0001").status == "active"
    assert _audit(fleet)[-1][:3] == ("operator:alice", "device.enable", "pi-0001")
    page = _text(admin.get("/ui/devices/pi-0001"))
    assert '<span id="device-status">active</span>' in page
    assert "pi-0001 enabled: a fresh password is on its way to it." in page


@pytest.mark.parametrize(
    ("reason", "message"),
    [("", "Give a reason: it is kept in the audit log."),
     ("r" * 257, "A reason has at most 256 characters.")],
)  # fmt: skip
def test_disable_needs_a_reason(admin: Browser, fleet: Services, reason: str, message: str) -> None:
    enroll(fleet, "pilots", "pi-0001")
    before = _audit(fleet)
    asked = admin.get(f"/ui/devices/pi-0001/disable?reason={reason}")
    assert asked.status_code == 400
    assert f'<small id="reason-error" class="error">{message}</small>' in _text(asked)
    posted = admin.post(
        "/ui/devices/pi-0001/disable", {"reason": reason}, csrf_from="/ui/devices/pi-0001"
    )
    assert posted.status_code == 400
    assert fleet.devices.show("pi-0001").status == "active" and _audit(fleet) == before


def test_a_viewer_reads_both_pages_and_can_change_nothing(viewer: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-0002")
    listing = _text(viewer.get("/ui/devices"))
    assert listed(listing) == ["pi-0001", "pi-0002"]
    main = listing.split("</header>", 1)[1]
    assert 'name="device"' not in main and 'id="bulk-disable"' not in main
    assert [b for b in re.findall(r"<button[^>]*>([^<]*)</button>", main)] == ["Search"]
    page = _text(viewer.get("/ui/devices/pi-0001"))
    assert "<button" not in page.split("</header>", 1)[1]  # no change button at all
    before = (_audit(fleet), fleet.devices.show("pi-0001"), fleet.devices.show("pi-0002"))

    token = viewer.csrf("/ui/devices/pi-0001")  # a real session's token: only the role is wrong
    for action in ("disable", "enable", "rotate", "pull", "allow-reenroll", "delete"):
        asked = viewer.get(f"/ui/devices/pi-0001/{action}?reason=x")
        assert asked.status_code == 403, action
        forged = viewer.client.post(
            f"/ui/devices/pi-0001/{action}", data={"csrf_token": token, "reason": "x"}
        )
        assert forged.status_code == 403, action
    bulk = viewer.client.post(
        "/ui/devices/disable",
        data={"csrf_token": token, "device": ["pi-0001", "pi-0002"], "reason": "x",
              "confirmed": "1"},
    )  # fmt: skip
    assert bulk.status_code == 403
    assert "this needs the admin role" in _text(bulk)
    after = (_audit(fleet), fleet.devices.show("pi-0001"), fleet.devices.show("pi-0002"))
    assert after == before


def test_a_post_without_the_csrf_token_changes_nothing(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001")
    before = _audit(fleet)
    for path, data in {
        "/ui/devices/pi-0001/disable": {"reason": "x"},
        "/ui/devices/pi-0001/delete": {},
        "/ui/devices/disable": {"device": "pi-0001", "reason": "x", "confirmed": "1"},
    }.items():
        for token in (None, "forged"):
            form = data if token is None else {**data, "csrf_token": token}
            answer = admin.client.post(path, data=form)
            assert answer.status_code == 400, path
            assert "the form's CSRF token is missing or wrong" in _text(answer)
    assert fleet.devices.show("pi-0001").status == "active" and _audit(fleet) == before
