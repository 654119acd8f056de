"""Who is signed in to the dashboard, and the CSRF token of their session.

The session is Flask's signed cookie, under a key derived from the server's secret key, so
every server of a cluster accepts every other's sessions. It holds the operator's id, the
password epoch it was signed in under (a password reset or a deletion ends it), the time of
its last request (idle timeout), its start (absolute lifetime) and a random CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from flask import Flask, Request, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from fleet.services import Services
from fleet.services.operators import OperatorView

COOKIE_NAME = "fleet_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_BYTES = 32
ENDED = {
    "idle": "You were signed out after a time without activity.",
    "lifetime": "Your session reached its lifetime: sign in again.",
    "changed": "Your account was changed or removed: sign in again.",
}


def services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies whenever the request came over HTTPS or the server's URL is https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        public_https = services().ctx.settings.public_url.startswith("https://")
        return bool(request.is_secure or public_https)


def init_sessions(app: Flask, services_: Services) -> None:
    settings = services_.ctx.settings
    app.secret_key = services_.ctx.hasher.derive("dashboard-session").hex()
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=settings.ui_session_lifetime_hours * 3600,
    )


def csrf_token() -> str:
    """This session's CSRF token, made on first use (a signed-out visitor gets one too)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(CSRF_BYTES)
        session["csrf"] = token
    return token


def csrf_ok(req: Request) -> bool:
    expected = session.get("csrf")
    sent = req.form.get(CSRF_FIELD) or req.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())


def sign_in(operator: OperatorView) -> None:
    """A fresh session for ``operator``: nothing of the signed-out one is kept (no fixation)."""
    session.clear()
    session.permanent = True
    now = int(time.time())
    session.update(op=operator.id, ep=operator.session_epoch, at=now, seen=now)
    csrf_token()


def sign_out() -> None:
    session.clear()


def current_operator() -> OperatorView | None:
    """The signed-in operator, checked once per request against the database and the clock.

    Sets ``g.session_ended`` (a key of ``ENDED``) when a session existed but has ended.
    """
    if "operator" in g:
        found: OperatorView | None = g.operator
        return found
    g.operator = None
    op_id, epoch, seen, at = (session.get(k) for k in ("op", "ep", "seen", "at"))
    if not all(isinstance(v, int) for v in (op_id, epoch, seen, at)):
        return None
    settings = services().ctx.settings
    now = int(time.time())
    reason = None
    if now - _int(seen) > settings.ui_idle_timeout_minutes * 60:
        reason = "idle"
    elif now - _int(at) > settings.ui_session_lifetime_hours * 3600:
        reason = "lifetime"
    operator = None if reason else services().operators.signed_in(_int(op_id), _int(epoch))
    if operator is None:
        g.session_ended = reason or "changed"
        session.clear()
        return None
    session["seen"] = now
    g.operator = operator
    return operator


def _int(value: Any) -> int:
    return int(value)
