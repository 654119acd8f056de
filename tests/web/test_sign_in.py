"""Sign-in, sessions and the dashboard's guards, through the HTTP a browser sends."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from fleet.services import Services
from fleet.web.blueprint import CONTENT_SECURITY_POLICY, admin_required
from tests.web.conftest import PASSWORD, Browser


def test_the_root_and_every_page_lead_a_stranger_to_sign_in(browser: Browser) -> None:
    assert browser.get("/").headers["Location"] == "/ui/"
    answer = browser.get("/ui/audit?actor=x")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/ui/sign-in?next=/ui/audit?actor%3Dx"


def test_signing_in_leads_to_the_page_asked_for(browser: Browser) -> None:
    form = {"name": "alice", "password": PASSWORD, "next": "/ui/audit?actor=test"}
    answer = browser.post("/ui/sign-in", form)
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/audit?actor=test"
    page = browser.get("/ui/audit").get_data(as_text=True)
    assert "alice <small>(admin)</small>" in page and ">Sign out</button>" in page


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/api/v1/tokens", "/ui\\..\\x"]
)
def test_next_never_leads_off_the_dashboard(browser: Browser, target: str) -> None:
    answer = browser.post("/ui/sign-in", {"name": "alice", "password": PASSWORD, "next": target})
    assert answer.headers["Location"] == "/ui/overview"


def test_a_wrong_password_is_a_401_that_says_no_more(browser: Browser) -> None:
    answer = browser.sign_in(password="not the password at all")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 401 and "wrong name or password" in page
    assert browser.get("/ui/audit").status_code == 302  # still signed out


def test_too_many_failures_are_a_429_with_retry_after(browser: Browser) -> None:
    for _ in range(5):
        assert browser.sign_in(password="not the password at all").status_code == 401
    answer = browser.sign_in()
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "too many failed sign-ins" in answer.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused_with_400(browser: Browser) -> None:
    answer = browser.client.post("/ui/sign-in", data={"name": "alice", "password": PASSWORD})
    assert answer.status_code == 400 and "CSRF token" in answer.get_data(as_text=True)
    browser.sign_in()
    forged = browser.client.post("/ui/sign-out", data={"csrf_token": "guessed"})
    assert forged.status_code == 400
    assert browser.get("/ui/audit").status_code == 200  # the forged sign-out did nothing


def test_the_session_cookie_is_httponly_and_samesite_lax(browser: Browser) -> None:
    cookie = browser.sign_in().headers["Set-Cookie"]
    assert cookie.startswith("fleet_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_the_cookie_is_secure_over_https(browser: Browser) -> None:
    token = browser.csrf()
    answer = browser.client.post(
        "/ui/sign-in",
        data={"csrf_token": token, "name": "alice", "password": PASSWORD},
        base_url="https://localhost",
    )
    assert "; Secure" in answer.headers["Set-Cookie"]


def test_pages_carry_strict_security_headers(browser: Browser) -> None:
    browser.sign_in()
    headers = browser.get("/ui/audit").headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"


def test_vendored_assets_are_served_from_this_server(browser: Browser) -> None:
    page = browser.get("/ui/sign-in").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    for asset in ("vendor/htmx.min.js", "vendor/pico.min.css", "fleet.css"):
        assert f'"/ui/static/{asset}"' in page
        assert browser.get(f"/ui/static/{asset}").status_code == 200


def test_sign_out_ends_the_session(browser: Browser) -> None:
    browser.sign_in()
    assert browser.post("/ui/sign-out", {}, csrf_from="/ui/audit").status_code == 302
    assert browser.get("/ui/audit").status_code == 302


def test_an_idle_session_ends(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    browser.sign_in()
    later = time.time() + 31 * 60  # the default idle timeout is 30 minutes
    monkeypatch.setattr(time, "time", lambda: later)
    location = browser.get("/ui/audit").headers["Location"]
    assert location == "/ui/sign-in?next=/ui/audit&ended=idle"
    notice = browser.get(location).get_data(as_text=True)
    assert "You were signed out after a time without activity." in notice
    assert browser.get("/ui/audit").status_code == 302  # the session is gone, not revived


def test_a_password_reset_ends_sessions_at_their_next_request(
    browser: Browser, services: Services
) -> None:
    browser.sign_in()
    assert browser.get("/ui/audit").status_code == 200
    services.operators.reset_password("alice", actor="test")
    assert browser.get("/ui/audit").headers["Location"].endswith("&ended=changed")


def test_admin_required_refuses_a_viewer_with_403_and_runs_nothing(app: Flask) -> None:
    changed: list[str] = []

    @admin_required
    def change() -> str:
        changed.append("changed")
        return "done"

    app.add_url_rule("/ui/test-change", "test_change", change, methods=["POST"])
    viewer = Browser(app.test_client())
    viewer.sign_in("victor")
    token = viewer.csrf("/ui/audit")
    assert viewer.client.post("/ui/test-change", data={"csrf_token": token}).status_code == 403
    admin = Browser(app.test_client())
    admin.sign_in("alice")
    token = admin.csrf("/ui/audit")
    assert admin.client.post("/ui/test-change", data={"csrf_token": token}).status_code == 200
    assert changed == ["changed"]
