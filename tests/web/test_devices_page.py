"""The Devices list and a device's page through the HTTP a browser sends: search, filters,
sorts and pages, each action with its confirmation step, bulk disable, and what a viewer
may not do."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import col, select

from fleet.db.models import AuditEvent
from fleet.domain.errors import NotFoundError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker
from tests.support.statements import counted
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
        ("limit=0", "'limit' is a whole number from 1 to 100, not '0'"),
        ("limit=" + "9" * 5000, "'limit' is a whole number from 1 to 100, not '99999999999"),
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
    for before in ("x", "0", "9" * 5000):
        bad = admin.get(f"/ui/devices/pi-0001?before={before}")
        assert bad.status_code == 400
        assert "'before' is an event id (a whole number)" in _text(bad)


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
    # The clock stands at 2026-01-01 00:00:00: a JWT issued at once lives 60 s, plus 60 s.
    assert "Registry access ends by 2026-01-01 00:02:01 UTC." in page  # the flash
    row = re.search(r'<td id="registry-access">(.*?)</td>', page, re.S)
    assert row is not None and re.sub(r"<[^>]+>", "", row[1]).startswith(
        "ends by 2026-01-01 00:02:01 UTC (in 2 min)"
    )
    assert ">Enable</button>" in page and ">Disable</button>" not in page
    assert "reason=lost in the field" in page  # the timeline shows why
    fleet.ctx.clock.advance(seconds=121)  # type: ignore[attr-defined]
    page = _text(admin.get("/ui/devices/pi-0001"))
    row = re.search(r'<td id="registry-access">(.*?)</td>', page, re.S)
    assert row is not None
    assert re.sub(r"<[^>]+>", "", row[1]) == "ended (by 2026-01-01 00:02:01 UTC)"

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
    assert 'id="registry-access"' not in page  # its access is back


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


# -- filters, sorts and pages through the page --------------------------------------------
def _seen(services: Services, device_id: str, ago: timedelta) -> None:
    services.devices.touch(device_id, services.ctx.clock() - ago)


def test_filters_in_the_url_and_the_form_keeps_them(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    fleet.groups.update("others", inactivity_limit_days=7, actor="t")
    enroll(fleet, "pilots", "pi-0001", "pi-0002", "pi-0003")
    enroll(fleet, "others", "ot-0001", "ot-0002")
    for device_id in ("pi-0001", "pi-0002", "pi-0003", "ot-0001"):  # ot-0002: still pending
        status(fleet, device_id, type="ack", kind="credentials", version=1, slot="password1")
    fleet.devices.disable("pi-0003", actor="t", reason="x")
    clock.advance(days=8)
    _seen(fleet, "pi-0001", timedelta(0))
    _seen(fleet, "ot-0001", timedelta(days=1))
    fleet.devices.rotate("pi-0002", actor="t")  # a delivery waiting for its ack
    # the group others' limit is 7 days: ot-0002 was never seen and enrolled 8 days ago
    for query, expected in {
        "group=pilots": ["pi-0001", "pi-0002", "pi-0003"],
        "status=disabled": ["pi-0003"],
        "status=active&group=others": ["ot-0001", "ot-0002"],
        "not_seen=1": ["ot-0002"],
        "pending=1": ["ot-0002", "pi-0002", "pi-0003"],  # first password; rotation; wipe
        "expiring=1": [],
        "q=ot&pending=1": ["ot-0002"],
        "group=nowhere": [],
    }.items():
        page = _text(admin.get(f"/ui/devices?{query}"))
        assert listed(page) == expected, query
    page = _text(admin.get("/ui/devices?group=pilots&status=active&not_seen=1&sort=last_seen"))
    assert 'id="f-group" name="group" maxlength="64" value="pilots"' in page
    assert '<option value="active" selected>active</option>' in page
    assert '<input type="checkbox" id="f-not_seen" name="not_seen" value="1" checked>' in page
    assert '<option value="last_seen" selected>Last seen</option>' in page
    clock.advance(days=30 - 8 - fleet.ctx.settings.expiry_warning_days + 1)
    # pi-0002's rotation was never acknowledged: it still uses its first password
    expiring = ["ot-0001", "pi-0001", "pi-0002"]
    assert listed(_text(admin.get("/ui/devices?expiring=1"))) == expiring


def test_sorts_walk_both_ways_across_pages(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    names = [f"pi-{i:04d}" for i in range(7)]
    enroll(fleet, "pilots", *names)
    hours = {"pi-0000": 5, "pi-0001": 1, "pi-0002": 5, "pi-0004": 3, "pi-0006": 2}
    for device_id, ago in hours.items():
        _seen(fleet, device_id, timedelta(hours=ago))
    by_last_seen = ["pi-0000", "pi-0002", "pi-0004", "pi-0006", "pi-0001", "pi-0003", "pi-0005"]
    for limit in (1, 2, 3, 7):
        for sort, direction, expected in (
            ("device_id", "asc", names),
            ("device_id", "desc", names[::-1]),
            ("last_seen", "asc", by_last_seen),  # the longest silent first, never seen last
            ("last_seen", "desc", by_last_seen[::-1]),
        ):
            pages = walk(admin, f"/ui/devices?sort={sort}&dir={direction}&limit={limit}")
            assert [d for p in pages for d in p] == expected, (sort, direction, limit)
            assert all(len(p) == limit for p in pages[:-1])
    found = NEXT.search(admin.get("/ui/devices?limit=2&dir=desc").get_data(True))
    assert found
    second = admin.get(html.unescape(found[1])).get_data(True)
    assert '<a href="/ui/devices?dir=desc&amp;limit=2">First page</a>' in second


def test_a_cursor_of_another_list_is_refused(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-0002", "pi-0003")
    found = NEXT.search(admin.get("/ui/devices?status=active&limit=1").get_data(True))
    assert found
    cursor = parse_qs(urlsplit(html.unescape(found[1])).query)["cursor"][0]
    assert listed(_text(admin.get(f"/ui/devices?status=active&limit=1&cursor={cursor}"))) == [
        "pi-0002"
    ]
    for other in ("status=disabled", "", "status=active&sort=enrolled", "status=active&q=pi"):
        answer = admin.get(f"/ui/devices?{other}&limit=1&cursor={cursor}")
        assert answer.status_code == 400, other
        assert (
            "the cursor is not valid for this list: pass back, unchanged, the nextCursor"
            in _text(answer)
        )


def test_a_page_costs_the_same_statements_at_10_and_200_devices(
    admin: Browser, fleet: Services
) -> None:
    from tests.services.test_device_list import Row, add

    fleet.groups.update("pilots", inactivity_limit_days=7, actor="t")
    counts = []
    for n in (10, 200):
        add(fleet, [Row(f"n{n}-{i:03d}", group="pilots", pending=1) for i in range(n)])
        for path in (
            f"/ui/devices?q=n{n}&limit=5",
            f"/ui/devices?q=n{n}&group=pilots&pending=1&sort=last_seen&dir=desc&limit=5",
            f"/ui/devices?q=n{n}&not_seen=1&expiring=1&sort=expiry&limit=5",
        ):
            with counted(fleet) as statements:
                answer = admin.get(path)
            assert answer.status_code == 200
            counts.append((path.split("&", 1)[-1], len(statements)))
    small, large = counts[: len(counts) // 2], counts[len(counts) // 2 :]
    assert [c for _, c in small] == [c for _, c in large], counts


# -- the other actions ------------------------------------------------------------------------
def test_rotate_pull_and_allow_reenroll_ask_first(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001")
    status(fleet, "pi-0001", type="ack", kind="credentials", version=1, slot="password1")
    for action, button, line, audited, message in (
        ("rotate", "Rotate now", "pi-0001: a new password is written to password2 and "
         "delivered to it now.", "device.rotate", "pi-0001: a new password is on its way"),
        ("pull", "Pull now", "pi-0001 is told (a signed command over MQTT) to pull its "
         "configured images now.", "device.pull", "pi-0001 was told to pull now."),
        ("allow-reenroll", "Allow re-enroll", "pi-0001 may enroll once more, with new keys",
         "device.allow-reenroll", "pi-0001 may enroll once more."),
    ):  # fmt: skip
        before = _audit(fleet)
        confirm = _text(admin.get(f"/ui/devices/pi-0001/{action}"))
        assert f"{button} pi-0001?" in confirm and line in confirm, action
        assert f'<button type="submit" class="danger">{button}</button>' in confirm
        assert _audit(fleet) == before  # asking changed nothing
        answer = admin.post(f"/ui/devices/pi-0001/{action}", {})
        assert answer.status_code == 303, action
        assert _audit(fleet)[-1][:3] == ("operator:alice", audited, "pi-0001")
        assert message in _text(admin.get("/ui/devices/pi-0001"))
    view = fleet.devices.show("pi-0001")
    assert view.allow_reenroll and view.last_version == 3  # the new password, the pull
    assert ">Allow re-enroll</button>" not in _text(admin.get("/ui/devices/pi-0001"))
    assert admin.get("/ui/devices/pi-0001/reboot").status_code == 404


def test_an_action_the_device_is_not_ready_for_is_refused_on_the_confirm_page(
    admin: Browser, fleet: Services
) -> None:
    enroll(fleet, "pilots", "pi-0001")
    fleet.devices.disable("pi-0001", actor="t", reason="x")
    before = _audit(fleet)
    answer = admin.post("/ui/devices/pi-0001/rotate", {}, csrf_from="/ui/devices/pi-0001")
    assert answer.status_code == 409
    page = _text(answer)
    assert '<p role="alert" class="error">device \'pi-0001\' is disabled, not active</p>' in page
    assert _audit(fleet) == before


def test_delete_asks_first_and_the_device_is_gone(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-0002")
    confirm = _text(admin.get("/ui/devices/pi-0001/delete"))
    assert "Delete pi-0001?" in confirm
    assert "pi-0001 is deleted with its registry token dev-pi-0001 and its broker login" in confirm
    assert "This cannot be undone" in confirm
    assert fleet.devices.show("pi-0001").status == "active"
    answer = admin.post("/ui/devices/pi-0001/delete", {})
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/devices"
    with pytest.raises(NotFoundError):
        fleet.devices.show("pi-0001")
    assert _audit(fleet)[-1][:3] == ("operator:alice", "device.delete", "pi-0001")
    page = _text(admin.get("/ui/devices"))
    assert listed(page) == ["pi-0002"]
    assert "pi-0001 deleted, with its registry token and broker login." in page
    assert admin.get("/ui/devices/pi-0001").status_code == 404


# -- bulk disable ----------------------------------------------------------------------------
def _bulk(admin: Browser, data: dict[str, Any]) -> Any:
    token = admin.csrf("/ui/devices")
    return admin.client.post("/ui/devices/disable", data={"csrf_token": token, **data})


def test_bulk_disable_lists_the_devices_then_reports_each(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-0002", "pi-0003", "pi-0004")
    fleet.devices.disable("pi-0003", actor="t", reason="earlier")
    page = _text(admin.get("/ui/devices?q=pi"))
    for device_id in ("pi-0001", "pi-0002"):
        assert (
            f'<input type="checkbox" name="device" value="{device_id}" form="bulk-disable" '
            f'aria-labelledby="dev-{device_id}">' in page
        )
    assert '<label for="bulk-reason">Reason</label>' in page
    assert '<input type="hidden" name="back" value="/ui/devices?q=pi">' in page
    chosen = ["pi-0001", "pi-0002", "pi-0003", "pi-0004"]
    before = _audit(fleet)
    confirm = _bulk(admin, {"device": chosen, "reason": "van stolen", "back": "/ui/devices?q=pi"})
    text = _text(confirm)
    assert confirm.status_code == 200 and "Disable 4 device(s)?" in text
    assert "4 device(s) are disabled: pi-0001, pi-0002, pi-0003, pi-0004." in text
    assert '<button type="submit" class="danger">Disable</button>' in text
    assert text.count('<input type="hidden" name="device"') == 4
    assert '<input type="hidden" name="confirmed" value="1">' in text
    assert '<a href="/ui/devices?q=pi">Cancel</a>' in text
    assert _audit(fleet) == before and fleet.devices.show("pi-0001").status == "active"

    fleet.devices.delete("pi-0004", actor="t")  # meanwhile
    hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', text)
    form: dict[str, Any] = {}
    for name, value in hidden:  # what the confirmation page's form sends
        if name != "csrf_token":
            form.setdefault(name, []).append(value)
    assert form == {
        "device": chosen,
        "reason": ["van stolen"],
        "back": ["/ui/devices?q=pi"],
        "confirmed": ["1"],
    }
    done = _bulk(admin, form)
    text = _text(done)
    assert done.status_code == 200
    assert "Disable: 2 of 4 device(s) disabled" in text
    results = re.findall(
        r'<th scope="row">(?:<a href="[^"]+">)?([\w-]+)(?:</a>)?</th>\s*'
        r'<td class="outcome">([^<]+)</td>',
        text,
    )
    assert results == [
        ("pi-0001", "disabled"),
        ("pi-0002", "disabled"),
        ("pi-0003", "already disabled"),
        ("pi-0004", "not found"),
    ]
    ends = [
        re.sub(r"<[^>]+>", "", cell).split(" (")[0]
        for cell in re.findall(r'<td class="access">(.*?)</td>', text, re.S)
    ]
    # Disabled here at the clock's 2026-01-01 00:00:00: 60 s JWTs plus the 60 s leeway.
    assert ends == ["ends by 2026-01-01 00:02:01 UTC"] * 2 + ["—", "—"]
    assert [fleet.devices.show(d).status for d in chosen[:3]] == ["disabled"] * 3
    events = _audit(fleet)[len(before) :]
    disabled = [e for e in events if e[1] == "device.disable"]
    assert [(a, t) for a, _, t, _ in disabled] == [
        ("operator:alice", "pi-0001"),
        ("operator:alice", "pi-0002"),
    ]
    assert all('"reason": "van stolen"' in d for *_, d in disabled)
    assert '<a href="/ui/devices?q=pi">Back to the devices</a>' in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "x"}, "No device was selected: tick the devices to disable first."),
        ({"device": [f"d{i:03d}" for i in range(101)], "reason": "x"},
         "Disable at most 100 devices at once (a page of the list)."),
        ({"device": ["pi-0001"], "reason": " "}, "Give a reason: it is kept in the audit log."),
        ({"device": ["pi-0001"], "reason": "r" * 300},
         "A reason has at most 256 characters."),
        ({"device": ["pi-0001"], "reason": "x", "back": "https://evil.example/ui/devices"}, None),
    ],
)  # fmt: skip
def test_bulk_disable_bad_input_changes_nothing(
    admin: Browser, fleet: Services, data: dict[str, Any], message: str | None
) -> None:
    enroll(fleet, "pilots", "pi-0001")
    before = _audit(fleet)
    answer = _bulk(admin, data)
    if message is None:  # a foreign "back" is not followed: the list's own path instead
        assert answer.status_code == 200 and '<a href="/ui/devices">Cancel</a>' in _text(answer)
    else:
        assert answer.status_code == 400
        assert f'<p role="alert" class="error">{message}</p>' in _text(answer)
    assert _audit(fleet) == before and fleet.devices.show("pi-0001").status == "active"


def test_the_timeline_is_paged_newest_first(admin: Browser, fleet: Services) -> None:
    enroll(fleet, "pilots", "pi-0001", "pi-00011")
    for _ in range(30):
        fleet.devices.allow_reenroll("pi-0001", actor="operator:bob")
    fleet.devices.allow_reenroll("pi-00011", actor="operator:bob")  # not pi-0001's
    first = admin.get("/ui/devices/pi-0001").get_data(as_text=True)
    body = first.split('class="timeline"')[1].split("</table>")[0]
    assert body.count("<code>device.allow-reenroll</code>") == 25
    older = re.search(r'href="(/ui/devices/pi-0001\?before=\d+)#timeline-title" rel="next"', first)
    assert older, first
    second = admin.get(older[1]).get_data(as_text=True)
    body = second.split('class="timeline"')[1].split("</table>")[0]
    assert body.count("<code>device.allow-reenroll</code>") == 5
    assert body.count("<code>device.enroll</code>") == 1 and "Older events" not in second
    assert 'href="/ui/devices/pi-0001#timeline-title">Newest events</a>' in second


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=" + "9" * 5000])
def test_a_number_int_refuses_is_a_400_not_a_500(admin: Browser, query: str) -> None:
    answer = admin.get(f"/ui/devices?{query}")
    assert answer.status_code == 400
