"""The dashboard's blueprint: sign-in required, CSRF on every change, strict headers.

Every page is server-rendered over the service layer; htmx (vendored) only enhances forms
that already work without JavaScript. Views never touch the ORM.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from fleet.domain.errors import FleetError
from fleet.http_errors import status_of
from fleet.web.format import exact, relative, time_tag
from fleet.web.session import csrf_ok, csrf_token, current_operator

web = Blueprint(
    "web",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
PUBLIC_ENDPOINTS = frozenset({"web.sign_in", "web.static"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
F = TypeVar("F", bound=Callable[..., Any])


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path under /ui/ of this server, never another host."""
    default = url_for("web.overview")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return default
    return target


@web.before_request
def _guard() -> Any:
    if request.method in UNSAFE_METHODS and not csrf_ok(request):
        abort(400, description="the form's CSRF token is missing or wrong: reload and try again")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if current_operator() is None:
        ended = g.get("session_ended")
        return redirect(url_for("web.sign_in", next=request.full_path.rstrip("?"), ended=ended))
    return None


def admin_required(view: F) -> F:
    """Changes are for admins: a viewer's (forged) request gets 403 and changes nothing."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        operator = current_operator()
        if operator is None or not operator.is_admin:
            abort(403, description="this needs the admin role; you are signed in as a viewer")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@web.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "web.static":
        # Pages show operational data and, once, secrets: never kept by a browser or proxy.
        response.headers["Cache-Control"] = "no-store"
    return response


@web.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "operator": g.get("operator"),
        "time_tag": time_tag,
        "exact": exact,
        "relative": relative,
    }


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


@web.errorhandler(FleetError)
def _fleet_error(exc: FleetError) -> tuple[str, int]:
    return _error_page(status_of(exc), exc.code, exc.message)


@web.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return _error_page(exc.code or 500, exc.name or "Error", exc.description or "")
