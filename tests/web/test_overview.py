"""The overview page on SQLite and PostgreSQL, over rows made the way the fleet makes them:
devices enrolled, approved or not, acknowledged, rotated and disabled through the services,
failed registry logins recorded and flushed by the health recorder, a scheduler pass run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from fleet.config import load_settings
from fleet.credentials import SecretHasher
from fleet.domain.rules import RepositoryActions
from fleet.scheduler import FleetScheduler, node_name
from fleet.services import Services
from fleet.services.broker import MosquittoBroker
from fleet.services.health import HealthRecorder
from fleet.services.overview import CHART_HOURS, HourPoint, broker_state
from tests.conftest import FakeClock
from tests.services.devices.conftest import new_device, status
from tests.support.fake_broker import FakeBroker
from tests.web.conftest import Browser

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=25, minutes=30)
ME = "test"


@pytest.fixture
def services(make_services) -> Services:  # type: ignore[no-untyped-def]
    # A warning window longer than the 30-day lifetime, shorter than the 90-day one.
    built: Services = make_services(expiry_warning_days=31)
    return built


@pytest.fixture
def scheduler(services: Services) -> Iterator[FleetScheduler]:
    made = FleetScheduler(services)
    yield made
    made.stop()  # on PostgreSQL the leader's lock outlives the test otherwise


def failed(services: Services, times: int, name: str, address: str) -> None:
    for _ in range(times):
        services.health.login_failed(name, address)


def build_fleet(services: Services, clock: FakeClock, scheduler: FleetScheduler) -> None:
    """The story the overview then tells; the comments say what each step leaves behind."""
    clock.now = T0
    services.broker = FakeBroker()
    services.health = HealthRecorder(services.ctx, clock=lambda: clock().timestamp())
    services.scope_maps.create(
        "devices-read",
        [RepositoryActions("edge/*", ("content/read", "metadata/read"))],
        actor=ME,
    )
    services.groups.create("pilots", scope_map="devices-read", inactivity_limit_days=1, actor=ME)
    services.groups.create("edges", scope_map="devices-read", password_lifetime_days=90, actor=ME)
    services.groups.create("labs1", scope_map="devices-read", require_approval=True, actor=ME)
    groups = ("pilots", "edges", "labs1")
    secrets = {g: services.groups.create_secret(g, actor=ME).value or "" for g in groups}
    # Jan 1 00:00: five enrolments; four get their first password (not a rotation).
    for device_id, group in (
        ("pi-1", "pilots"),
        ("pi-2", "pilots"),
        ("pi-3", "pilots"),
        ("edge-1", "edges"),
        ("lab-1", "labs1"),
    ):
        services.devices.enroll(device_id, secrets[group], *new_device(device_id).keys)
    # 00:10: three acknowledgements; two failed logins from 10.0.0.9.
    clock.advance(minutes=10)
    for device_id in ("pi-1", "pi-2", "edge-1"):
        status(services, device_id, type="ack", kind="credentials", version=1)
    failed(services, 2, "pi-9", "10.0.0.9")
    services.health.flush()
    # 01:05: two rotations (one acknowledged at once), one device disabled, five failures.
    clock.advance(minutes=55)
    services.devices.rotate("pi-1", actor=ME)
    services.devices.rotate("edge-1", actor=ME)
    status(services, "edge-1", type="ack", kind="credentials", version=2)
    services.devices.disable("pi-2", actor=ME, reason="lost")
    failed(services, 3, "pi-9", "10.0.0.9")
    failed(services, 1, "ghost", "10.0.0.8")
    failed(services, 1, "pi-1", "10.0.0.8")
    services.health.flush()
    # 01:06: a scheduler pass. Nobody is silent for a day yet; pi-1's 30-day password is
    # inside the 31-day warning window, so it is warned about.
    clock.advance(minutes=1)
    scheduler.tick()
    # Jan 2 01:00: one more device, enrolled and acknowledged.
    clock.now = T0 + timedelta(hours=25)
    services.devices.enroll("pi-4", secrets["pilots"], *new_device("pi-4").keys)
    status(services, "pi-4", type="ack", kind="credentials", version=1)
    clock.now = NOW


def test_the_services_figures(
    services: Services, clock: FakeClock, scheduler: FleetScheduler
) -> None:
    build_fleet(services, clock, scheduler)
    view = services.overview.page(broker=services.broker)
    c = view.counters
    assert (c.active, c.pending_approval, c.disabled) == (4, 1, 1)  # pi-1 pi-3 pi-4 edge-1
    assert (c.expiring, c.expiring_days) == (2, 31)  # pi-1 and pi-4; edge-1 has 90 days
    # pi-1's rotation and pi-3's first password wait for an ack; pi-2's wipe command too.
    assert (c.devices_awaiting_ack, c.deliveries_unacked) == (3, 3)
    assert c.not_seen == 2  # pi-1 (last seen 00:10 on Jan 1) and pi-3 (never seen)
    assert c.failed_logins_24h == 5  # Jan 1 00:xx is more than 24 h ago: its 2 are left out
    assert view.top_tokens == [("pi-9", 3), ("ghost", 1), ("pi-1", 1)]
    assert view.top_addresses == [("10.0.0.9", 3), ("10.0.0.8", 2)]

    assert len(view.chart) == CHART_HOURS
    assert view.chart[0].hour == NOW.replace(minute=0) - timedelta(hours=CHART_HOURS - 1)
    assert view.chart[-1].hour == NOW.replace(minute=0)
    busy = [p for p in view.chart if (p.rotations, p.acked, p.failed_logins) != (0, 0, 0)]
    assert busy == [
        HourPoint(T0, rotations=0, acked=3, failed_logins=2),
        HourPoint(T0 + timedelta(hours=1), rotations=2, acked=1, failed_logins=5),
        HourPoint(T0 + timedelta(hours=25), rotations=0, acked=1, failed_logins=0),
    ]
    # Ended hours are now kept in activity_hourly; read back, they are the same figures.
    assert services.overview.page().chart == view.chart

    run = view.scheduler.last_run if view.scheduler else None
    assert run is not None and run.node == node_name() and run.error is None
    assert run.started_at == T0 + timedelta(hours=1, minutes=6)
    assert run.summary == {
        "devices_disabled_inactive": 0,
        "failed_steps": 0,
        "published": 3,  # the three unacknowledged deliveries, sent again
        "retired": 0,
        "rotated": 0,
        "skipped": 0,
        "tokens_disabled": 0,
        "warnings": 1,
    }
    assert view.scheduler is not None and view.scheduler.leader is None  # a day ago
    assert view.broker is not None and view.broker.state == "not configured"


def test_the_page_shows_them_with_links(
    services: Services, clock: FakeClock, scheduler: FleetScheduler, browser: Browser
) -> None:
    build_fleet(services, clock, scheduler)
    browser.sign_in()
    answer = browser.get("/ui/overview")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    counters = re.findall(
        r'<li>(?:<a href="([^"]+)">|<div class="counter">)<strong>(\d+)</strong> '
        r"<span>([^<]+)</span>",
        page,
    )
    assert counters == [
        ("/ui/devices?status=active", "4", "active devices"),
        ("/ui/devices?status=pending", "1", "pending approval"),
        ("/ui/devices?status=disabled", "1", "disabled"),
        ("/ui/devices?expiring=1", "2", "credentials expiring within 31 d"),
        ("/ui/devices?pending=1", "3", "devices awaiting acknowledgement (3 deliveries)"),
        ("/ui/devices?not_seen=1", "2", "not seen beyond their group's limit"),
        ("#failures-heading", "5", "failed registry logins in 24 h"),
    ]
    # Each device counter leads to a list of as many devices (the list and the counter
    # share their definitions): the devices themselves, named.
    listed = {}
    for link, _, label in counters[:-1]:
        answer = browser.get(link)
        assert answer.status_code == 200, link
        listed[label] = re.findall(r'<th scope="row"><a id="dev-([\w-]+)"', answer.get_data(True))
    assert [len(ids) for ids in listed.values()] == [int(n) for _, n, _ in counters[:-1]]
    assert listed["credentials expiring within 31 d"] == ["pi-1", "pi-4"]
    assert listed["not seen beyond their group's limit"] == ["pi-1", "pi-3"]
    tokens = page.split('class="top-tokens"')[1].split("</table>")[0]
    assert re.findall(r"<tr><th scope=\"row\"><code>([^<]+)</code></th><td>(\d+)</td>", tokens) == [
        ("pi-9", "3"),
        ("ghost", "1"),
        ("pi-1", "1"),
    ]
    addresses = page.split('class="top-addresses"')[1].split("</table>")[0]
    assert re.findall(r"<code>([^<]+)</code></th><td>(\d+)</td>", addresses) == [
        ("10.0.0.9", "3"),
        ("10.0.0.8", "2"),
    ]

    svg = page.split('<svg class="chart"')[1].split("</svg>")[0]
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in svg
    assert '<title id="chart-title">' in svg
    assert "2 rotations (at most 2 in one hour); 5 acknowledged deliveries (at most 3" in svg
    bars = re.findall(
        r'<rect x="(\d+)" y="([\d.]+)" width="4" height="([\d.]+)"><title>([^<]+)</title>', svg
    )
    assert len(bars) == 3 * CHART_HOURS  # one bar per hour per series, each with its title
    titles = {title for *_, title in bars}
    assert "2026-01-01 01:00 UTC: 2 rotations" in titles
    assert "2026-01-01 00:00 UTC: 3 acknowledged deliveries" in titles
    assert "2026-01-01 01:00 UTC: 5 failed logins" in titles
    # the tallest bar of a series fills its panel; an empty hour has no height
    heights = {title: float(h) for _, _, h, title in bars}
    assert heights["2026-01-01 01:00 UTC: 5 failed logins"] == 56.0
    assert heights["2026-01-01 00:00 UTC: 2 failed logins"] == 22.4
    assert heights["2026-01-02 00:00 UTC: 0 failed logins"] == 0.0
    figures = page.split('class="figures"')[1].split("</table>")[0]
    rows = re.findall(
        r'<tr><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>', figures
    )
    assert len(rows) == CHART_HOURS
    assert rows[0] == ("2026-01-02 01:00", "0", "1", "0")  # newest first
    assert ("2026-01-01 01:00", "2", "1", "5") in rows

    last_pass = page.split('class="last-pass"')[1].split("</dd>")[0]
    assert "on <code>" + node_name() + "</code>" in last_pass
    assert "warnings 1" in last_pass and 'datetime="2026-01-01T01:06:00+00:00"' in last_pass
    assert "none seen in the last 120 s" in page
    assert "not configured" in page.split('class="broker"')[1].split("</dd>")[0]


def test_the_leader_is_the_node_of_a_recent_pass(
    services: Services, scheduler: FleetScheduler, clock: FakeClock
) -> None:
    scheduler.tick()
    clock.advance(seconds=100)  # within two 60 s intervals
    view = services.overview.page()
    assert view.scheduler is not None and view.scheduler.leader == node_name()
    clock.advance(seconds=21)
    view = services.overview.page()
    assert view.scheduler is not None and view.scheduler.leader is None


def test_the_page_costs_the_same_queries_whatever_the_fleet(
    services: Services, clock: FakeClock, scheduler: FleetScheduler, browser: Browser
) -> None:
    engine = services.ctx.db.engine
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    def steady() -> list[str]:
        """The statements of a page once the ended hours are kept (the first page counts
        them once, with five more statements: three counts, an insert, a prune)."""
        statements.clear()
        assert browser.get("/ui/overview").status_code == 200
        first = len(statements)
        statements.clear()
        assert browser.get("/ui/overview").status_code == 200
        assert first == len(statements) + 5
        seen = [s for s in statements if "operators" not in s]  # the session's own
        statements.clear()
        return seen

    browser.sign_in()
    event.listen(engine, "before_cursor_execute", count)
    try:
        empty = steady()
        build_fleet(services, clock, scheduler)
        full = steady()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(full) == len(empty) + 1 == 13, full  # +1: groups with a limit are counted
    assert not any("FROM deliveries" in s and "acked_at <" in s for s in full)  # all live


def test_the_home_and_the_nav_lead_to_the_overview(browser: Browser) -> None:
    answer = browser.sign_in()
    assert answer.headers["Location"] == "/ui/overview"
    assert browser.get("/ui/").headers["Location"] == "/ui/overview"
    page = browser.get("/ui/overview").get_data(as_text=True)
    nav = re.findall(r'<li><a href="([^"]+)"( aria-current="page")?>([^<]+)</a></li>', page)
    assert nav[:7] == [
        ("/ui/overview", ' aria-current="page"', "Overview"),
        ("/ui/devices", "", "Devices"),
        ("/ui/groups", "", "Groups"),
        ("/ui/tokens", "", "Tokens"),
        ("/ui/scope-maps", "", "Scope maps"),
        ("/ui/access", "", "Access"),
        ("/ui/audit", "", "Audit"),
    ]


def test_broker_states(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert broker_state("", None).state == "not configured"
    assert broker_state("mqtt://127.0.0.1:1883", None).state == "not connected yet"
    settings = load_settings(
        environ={}, overrides={"data_dir": tmp_path, "mqtt_url": "mqtt://127.0.0.1:1"}
    )
    broker = MosquittoBroker(settings, SecretHasher(b"k" * 32), None)
    state = broker_state(settings.mqtt_url, broker)
    assert (state.state, state.detail) == (
        "not connected yet",
        "mqtt://127.0.0.1:1: connects on first use",
    )
