"""The Groups pages through the HTTP a browser sends: settings, secrets shown once, the
approval queue, deletion, and what a viewer may not do."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlmodel import col, select

from fleet.db.models import AuditEvent
from fleet.domain.errors import AuthenticationError, NotFoundError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device
from tests.support.fake_broker import FakeBroker
from tests.support.statements import counted
from tests.web.conftest import Browser

READ = ("content/read", "metadata/read")
GOOD = {
    "name": "pilots-eu",
    "scope_map": "devices-read",
    "password_lifetime_days": "20",
    "rotation_window_days": "5",
    "inactivity_limit_days": "14",
    "jwt_lifetime_seconds": "120",
    "require_approval": "on",
}
VALUE = re.compile(r'id="created-value" readonly value="([^"]+)"')


@pytest.fixture
def fleet(services: Services) -> Services:
    services.broker = FakeBroker()
    services.scope_maps.create("devices-read", [RepositoryActions("edge/*", READ)], actor="test")
    services.scope_maps.create(
        "writers-map", [RepositoryActions("edge/*", ("content/write",))], actor="test"
    )
    return services


@pytest.fixture
def admin(browser: Browser, fleet: Services) -> Browser:
    browser.sign_in("alice")
    return browser


def _text(answer: Any) -> str:
    return html.unescape(answer.get_data(as_text=True))


def _audit(services: Services) -> list[tuple[str, str, str]]:
    with services.ctx.db.session() as s:
        rows = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        return [(e.actor, e.action, e.target) for e in rows]


def _enroll_pending(services: Services, group: str, *device_ids: str) -> None:
    value = services.groups.create_secret(group, actor="test").value or ""
    for device_id in device_ids:
        view, _ = services.devices.enroll(device_id, value, *new_device(device_id).keys)
        assert view.status == "pending"


def test_the_table_shows_each_group_with_its_counts_in_constant_queries(
    admin: Browser, fleet: Services
) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    _enroll_pending(fleet, "careful", "rpi-0001", "rpi-0002")
    page = _text(admin.get("/ui/groups"))
    row = re.search(
        r'<tr>\s*<th scope="row"><a href="/ui/groups/careful">careful</a></th>(.*?)</tr>',
        page,
        re.S,
    )
    assert row, page
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    ]
    assert cells == ["devices-read", "30 d", "7 d", "none", "60 s", "yes", "2 (2 pending)"]
    assert 'aria-current="page">Groups</a>' in page

    with counted(fleet) as one_group:
        assert admin.get("/ui/groups").status_code == 200
    for n in range(5):
        fleet.groups.create(f"more-{n:02d}", scope_map="devices-read", actor="t")
        _enroll_pending(fleet, "careful", f"rpi-01{n:02d}")
    with counted(fleet) as six_groups:
        assert admin.get("/ui/groups").status_code == 200
    assert len(six_groups) == len(one_group)


def test_create_a_group(admin: Browser, fleet: Services) -> None:
    form = admin.get("/ui/groups/new")
    assert form.status_code == 200
    assert '<option value="devices-read">' in _text(form)
    assert '<option value="writers-map">' not in _text(form)  # not read-only: not offered
    answer = admin.post("/ui/groups/new", GOOD)
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/groups/pilots-eu"
    made = fleet.groups.show("pilots-eu")
    assert (made.scope_map, made.password_lifetime_days, made.rotation_window_days) == (
        "devices-read",
        20,
        5,
    )
    assert made.inactivity_limit_days == 14 and made.require_approval is True
    assert made.jwt_lifetime_seconds == 120
    assert _audit(fleet)[-1] == ("operator:alice", "group.create", "pilots-eu")
    assert "Group pilots-eu created." in _text(admin.get(answer.headers["Location"]))


BAD_GROUPS = [
    ({"name": "ab"}, "name", "invalid device group name 'ab': use 5 to 50 letters, digits or "
     "hyphens", 400),
    ({"name": "_mine"}, "name", "device group name '_mine' is reserved: names starting with "
     "'_' belong to the system", 400),
    ({"scope_map": "nowhere"}, "scope_map", "scope map 'nowhere' does not exist", 404),
    ({"scope_map": "writers-map"}, "scope_map", "scope map 'writers-map' grants content/write: "
     "a device group's map may hold only content/read and metadata/read", 400),
    ({"password_lifetime_days": "0"}, "password_lifetime_days",
     "the password lifetime must be 1 to 3650 days", 400),
    ({"password_lifetime_days": "ten"}, "password_lifetime_days",
     "The password lifetime is a whole number of days", 400),
    ({"rotation_window_days": "20"}, "rotation_window_days", "the rotation window must be at "
     "least 1 day and shorter than the password lifetime (20 days)", 400),
    ({"inactivity_limit_days": "0"}, "inactivity_limit_days",
     "the inactivity limit must be 1 to 3650 days (or none)", 400),
    ({"inactivity_limit_days": "-3"}, "inactivity_limit_days",
     "The inactivity limit is a whole number of days (empty for no limit)", 400),
    ({"jwt_lifetime_seconds": "59"}, "jwt_lifetime_seconds",
     "the registry JWT lifetime must be 60 to 3600 seconds (not 59)", 400),
    ({"jwt_lifetime_seconds": "3601"}, "jwt_lifetime_seconds",
     "the registry JWT lifetime must be 60 to 3600 seconds (not 3601)", 400),
    ({"jwt_lifetime_seconds": "1.5"}, "jwt_lifetime_seconds",
     "The registry JWT lifetime is a whole number of seconds", 400),
    ({"scope_map": ""}, "scope_map", "A scope map is required", 400),
    ({"name": ""}, "name", "A name is required", 400),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "message", "status"), BAD_GROUPS)
def test_bad_input_is_shown_next_to_its_field_and_changes_nothing(
    admin: Browser,
    fleet: Services,
    changes: dict[str, str],
    field: str,
    message: str,
    status: int,
) -> None:
    before = _audit(fleet)
    answer = admin.post("/ui/groups/new", {**GOOD, **changes})
    page = _text(answer)
    assert answer.status_code == status
    assert f'<small id="err-{field}" class="error">{message}</small>' in page
    assert f'aria-invalid="true" aria-describedby="err-{field}"' in page
    for name, value in {**GOOD, **changes}.items():  # what was typed is kept
        if name != "require_approval":
            assert f'name="{name}"' in page and f'value="{value}"' in page
    assert fleet.groups.summaries() == [] and _audit(fleet) == before


def test_a_taken_name_is_shown_next_to_the_name(admin: Browser, fleet: Services) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    answer = admin.post("/ui/groups/new", GOOD)
    assert answer.status_code == 409
    assert (
        '<small id="err-name" class="error">device group \'pilots-eu\' already exists</small>'
        in _text(answer)
    )
    assert fleet.groups.show("pilots-eu").password_lifetime_days == 30


def test_update_the_settings(admin: Browser, fleet: Services) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    page = _text(admin.get("/ui/groups/pilots-eu"))
    assert 'id="s-password_lifetime_days"' in page and ">Save</button>" in page
    form = {**GOOD, "password_lifetime_days": "60", "rotation_window_days": "10"}
    del form["name"]
    answer = admin.post("/ui/groups/pilots-eu", form)
    assert answer.status_code == 303
    after = fleet.groups.show("pilots-eu")
    assert (after.password_lifetime_days, after.rotation_window_days) == (60, 10)
    assert after.inactivity_limit_days == 14 and after.require_approval is True
    assert _audit(fleet)[-1] == ("operator:alice", "group.update", "pilots-eu")
    assert "Settings of pilots-eu saved." in _text(admin.get("/ui/groups/pilots-eu"))

    bad = admin.post("/ui/groups/pilots-eu", {**form, "rotation_window_days": "60"})
    assert bad.status_code == 400
    assert (
        '<small id="s-err-rotation_window_days" class="error">the rotation window must be at '
        "least 1 day and shorter than the password lifetime (60 days)</small>" in _text(bad)
    )
    assert 'id="s-rotation_window_days" name="rotation_window_days"' in _text(bad)
    assert fleet.groups.show("pilots-eu").rotation_window_days == 10

    audited = len(_audit(fleet))
    again = admin.post("/ui/groups/pilots-eu", form)
    assert again.status_code == 303 and len(_audit(fleet)) == audited  # nothing changed
    assert "Nothing changed." in _text(admin.get("/ui/groups/pilots-eu"))


def test_a_one_time_code_is_shown_once_and_enrolls_one_device(
    admin: Browser, fleet: Services, clock: FakeClock
) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    answer = admin.post(
        "/ui/groups/pilots-eu/secrets",
        {"kind": "code", "expires_at": "2026-01-08T12:00"},
        csrf_from="/ui/groups/pilots-eu",
    )
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"
    page = _text(answer)
    found = VALUE.search(page)
    assert found and found.group(1).startswith("fltc_")
    code = found.group(1)
    assert "It will not be shown again:" in page
    assert 'data-copy="created-value"' in page and "copy.js" in page
    (secret,) = fleet.groups.show("pilots-eu").secrets
    assert secret.kind == "code" and code.endswith(secret.hint)
    assert (
        secret.expires_at is not None
        and secret.expires_at.isoformat() == "2026-01-08T12:00:00+00:00"
    )
    assert _audit(fleet)[-1] == ("operator:alice", "group.code.create", "pilots-eu")

    later = _text(admin.get("/ui/groups/pilots-eu"))
    assert code not in later and "created-value" not in later
    assert f"<code>{secret.hint}</code>" in later

    view, _ = fleet.devices.enroll("rpi-0001", code, *new_device("rpi-0001").keys)
    assert view.status == "active"
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("rpi-0002", code, *new_device("rpi-0002").keys)
    assert "by rpi-0001" in _text(admin.get("/ui/groups/pilots-eu"))


BAD_SECRETS = [
    ({"kind": "secret", "expires_at": "2025-12-31T23:00"}, "the expiry is not in the future"),
    ({"kind": "secret", "expires_at": "tomorrow"},
     "the expiry is a time such as 2026-12-31T18:00 (UTC); got 'tomorrow'"),
    ({"kind": "both", "expires_at": ""}, "choose an enrollment secret or a one-time code"),
]  # fmt: skip


@pytest.mark.parametrize(("form", "message"), BAD_SECRETS)
def test_a_bad_secret_form_makes_nothing(
    admin: Browser, fleet: Services, form: dict[str, str], message: str
) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    answer = admin.post("/ui/groups/pilots-eu/secrets", form, csrf_from="/ui/groups/pilots-eu")
    assert answer.status_code == 400
    page = _text(answer)
    assert f'<p role="alert" class="error" id="secret-error">{message}</p>' in page
    assert f'value="{form["expires_at"]}"' in page
    assert "created-value" not in page and fleet.groups.show("pilots-eu").secrets == ()


def test_revoke_asks_first_then_the_secret_enrolls_no_one(admin: Browser, fleet: Services) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    made = fleet.groups.create_secret("pilots-eu", actor="t")
    page = _text(admin.get("/ui/groups/pilots-eu"))
    assert f'action="/ui/groups/pilots-eu/secrets/{made.id}/revoke"' in page
    confirm = admin.get(f"/ui/groups/pilots-eu/secrets/{made.id}/revoke")
    text = _text(confirm)
    assert (
        confirm.status_code == 200 and fleet.groups.show("pilots-eu").secrets[0].revoked_at is None
    )
    assert (
        f"The enrollment secret of group pilots-eu ending in {made.hint} stops working at once: "
        "no device can enroll with it any more." in text
    )
    assert '<button type="submit" class="danger">Revoke</button>' in text
    answer = admin.post(f"/ui/groups/pilots-eu/secrets/{made.id}/revoke", {})
    assert answer.status_code == 303
    assert fleet.groups.show("pilots-eu").secrets[0].revoked_at is not None
    assert _audit(fleet)[-1] == ("operator:alice", "group.secret.revoke", "pilots-eu")
    with pytest.raises(AuthenticationError):
        fleet.devices.enroll("rpi-0001", made.value or "", *new_device("rpi-0001").keys)
    after = _text(admin.get("/ui/groups/pilots-eu"))
    assert f"ending in {made.hint} is revoked." in after and ">revoked</span>" in after
    assert admin.get("/ui/groups/pilots-eu/secrets/999/revoke").status_code == 404


def test_approve_and_reject_pending_devices(admin: Browser, fleet: Services) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    _enroll_pending(fleet, "careful", "rpi-0001", "rpi-0002", "rpi-0003", "rpi-0004")
    fleet.groups.create("elsewhere", scope_map="devices-read", require_approval=True, actor="t")
    _enroll_pending(fleet, "elsewhere", "rpi-0005")
    page = _text(admin.get("/ui/groups/careful"))
    assert "4 device(s) waiting for approval" in page
    assert page.count('aria-label="Approve rpi-0') == 4

    answer = admin.post(
        "/ui/groups/careful/devices/rpi-0001/approve", {}, csrf_from="/ui/groups/careful"
    )
    assert answer.status_code == 303
    assert fleet.devices.show("rpi-0001").status == "active"
    assert fleet.tokens.show("dev-rpi-0001").status == "enabled"
    assert ("operator:alice", "device.approve", "rpi-0001") in _audit(fleet)

    confirm = _text(admin.get("/ui/groups/careful/devices/rpi-0002/reject"))
    assert "Reject rpi-0002?" in confirm
    assert (
        "Its record, its registry token dev-rpi-0002 (never enabled) and its broker login are "
        "deleted." in confirm
    )
    assert '<button type="submit" class="danger">Reject</button>' in confirm
    assert fleet.devices.show("rpi-0002").status == "pending"  # asking changed nothing
    rejected = admin.post("/ui/groups/careful/devices/rpi-0002/reject", {})
    assert rejected.status_code == 303
    with pytest.raises(NotFoundError):
        fleet.devices.show("rpi-0002")
    assert _audit(fleet)[-1] == ("operator:alice", "device.reject", "rpi-0002")

    client = admin.client
    token = admin.csrf("/ui/groups/careful")
    bulk = client.post(
        "/ui/groups/careful/approve",
        data={"csrf_token": token, "device_id": ["rpi-0003", "rpi-0004", "rpi-0001", "rpi-0005"]},
    )
    assert bulk.status_code == 303
    assert [fleet.devices.show(d).status for d in ("rpi-0003", "rpi-0004")] == ["active"] * 2
    after = _text(admin.get("/ui/groups/careful"))
    assert "2 device(s) approved: rpi-0003, rpi-0004." in after
    assert "Not approved: device 'rpi-0001' is active, not pending." in after
    assert "Not approved: device 'rpi-0005' is not in group 'careful'." in after
    assert "No device is waiting for approval." in after

    assert admin.get("/ui/groups/careful/devices/rpi-0001/reject").status_code == 409
    assert (
        admin.post(
            "/ui/groups/careful/devices/rpi-0005/approve", {}, csrf_from="/ui/groups/careful"
        ).status_code
        == 404
    )
    assert fleet.devices.show("rpi-0005").status == "pending"


def test_delete_asks_first_and_is_refused_while_devices_remain(
    admin: Browser, fleet: Services
) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    _enroll_pending(fleet, "careful", "rpi-0001")
    confirm = _text(admin.get("/ui/groups/careful/delete"))
    assert "Delete group careful?" in confirm
    assert "Group careful is deleted, with its settings and all its enrollment secrets" in confirm
    assert "It still has 1 device(s): the server refuses" in confirm
    refused = admin.post("/ui/groups/careful/delete", {})
    assert refused.status_code == 409
    assert (
        "device group &#39;careful&#39; still has 1 device(s): delete them first"
        in refused.get_data(as_text=True)
    )
    assert fleet.groups.show("careful").devices == 1

    admin.post("/ui/groups/careful/devices/rpi-0001/reject", {})
    gone = admin.post("/ui/groups/careful/delete", {})
    assert gone.status_code == 303 and gone.headers["Location"] == "/ui/groups"
    with pytest.raises(NotFoundError):
        fleet.groups.show("careful")
    assert _audit(fleet)[-1] == ("operator:alice", "group.delete", "careful")
    assert "Group careful deleted." in _text(admin.get("/ui/groups"))


def test_a_viewer_sees_everything_and_can_change_nothing(browser: Browser, fleet: Services) -> None:
    fleet.groups.create("careful", scope_map="devices-read", require_approval=True, actor="t")
    _enroll_pending(fleet, "careful", "rpi-0001")
    made = fleet.groups.create_secret("careful", actor="t")
    browser.sign_in("victor")
    listing = _text(browser.get("/ui/groups"))
    assert "careful" in listing and "Create a group" not in listing
    page = _text(browser.get("/ui/groups/careful"))
    assert "rpi-0001" in page and f"<code>{made.hint}</code>" in page
    assert "<button" not in page.split("</header>", 1)[1]  # no change button at all
    before = (_audit(fleet), fleet.groups.show("careful"), fleet.devices.show("rpi-0001"))

    token = browser.csrf("/ui/groups/careful")  # a real session's token: only the role is wrong
    forged = {
        "/ui/groups/new": GOOD,
        "/ui/groups/careful": {**GOOD, "password_lifetime_days": "90"},
        "/ui/groups/careful/secrets": {"kind": "code", "expires_at": ""},
        f"/ui/groups/careful/secrets/{made.id}/revoke": {},
        "/ui/groups/careful/devices/rpi-0001/approve": {},
        "/ui/groups/careful/approve": {"device_id": "rpi-0001"},
        "/ui/groups/careful/devices/rpi-0001/reject": {},
        "/ui/groups/careful/delete": {},
    }
    for path, form in forged.items():
        answer = browser.client.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403, path
        assert "this needs the admin role" in _text(answer)
    for path in (
        "/ui/groups/new",
        "/ui/groups/careful/delete",
        "/ui/groups/careful/devices/rpi-0001/reject",
    ):
        assert browser.get(path).status_code == 403, path
    after = (_audit(fleet), fleet.groups.show("careful"), fleet.devices.show("rpi-0001"))
    assert after == before


def test_a_post_without_the_csrf_token_is_refused(admin: Browser, fleet: Services) -> None:
    fleet.groups.create("pilots-eu", scope_map="devices-read", actor="t")
    answer = admin.client.post("/ui/groups/pilots-eu/secrets", data={"kind": "code"})
    assert answer.status_code == 400 and "CSRF token" in _text(answer)
    assert fleet.groups.show("pilots-eu").secrets == ()


def test_an_unknown_group_is_a_404_page(admin: Browser) -> None:
    answer = admin.get("/ui/groups/nowhere")
    assert answer.status_code == 404 and "device group 'nowhere' does not exist" in _text(answer)


def test_a_groups_secrets_are_shown_in_pages(admin: Browser, fleet: Services) -> None:
    from fleet.web.views.groups import SECRETS_PAGE

    fleet.groups.create("many-codes", scope_map="devices-read", actor="t")
    made = [fleet.groups.create_secret("many-codes", one_time=True, actor="t") for _ in range(52)]
    first = _text(admin.get("/ui/groups/many-codes"))
    revoke = "/ui/groups/many-codes/secrets/{}/revoke"
    assert [m.id for m in made if revoke.format(m.id) in first] == [m.id for m in made][
        :SECRETS_PAGE
    ]
    next_link = first.split('" rel="next"')[0].rsplit('href="', 1)[1]
    second = _text(admin.get(next_link.replace("&amp;", "&")))
    assert [m.id for m in made if revoke.format(m.id) in second] == [m.id for m in made][
        SECRETS_PAGE:
    ]
    assert 'rel="next"' not in second
