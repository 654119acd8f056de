"""``/oauth2/token``: the Docker registry token endpoint, and the JWKS beside it.

What it reads is bounded before it is read: the form (MAX_TOKEN_FORM_BYTES), the number of
scopes (MAX_SCOPES, counted, not parsed), and the scopes are parsed only once the password is
known to be right.

GET follows the Docker token authentication spec (HTTP Basic, ``service``, repeated ``scope``,
``account``, ``offline_token``); POST follows its OAuth2 form (``grant_type=password`` or
``refresh_token``). Asking for more than a token allows is not an error: the JWT carries the
allowed subset and the registry itself answers "requested access to the resource is denied".
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from fleet.domain.errors import ValidationError
from fleet.domain.throttle import FailureLimiter
from fleet.input_guard import MESSAGE as NUL_MESSAGE
from fleet.input_guard import form_holds_nul
from fleet.registry_auth.grants import access_claim
from fleet.registry_auth.scopes import Scope, parse_scopes
from fleet.registry_auth.tokens import MintedToken, compact_json
from fleet.services import Services
from fleet.services.registry_auth import Principal
from fleet.services.signing import RefreshClaims

log = logging.getLogger(__name__)
blueprint = Blueprint("registry_token", __name__)
REALM = "fleet"
LIMITER_EXTENSION = "fleet.login_limiter"
# A token request is a short form or query: a few scopes of at most MAX_SCOPE_LENGTH each.
# Registry clients ask for one to three scopes (pull; push with a cross-repository mount).
MAX_SCOPES = 32
MAX_TOKEN_FORM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Answer:
    principal: Principal | None
    refresh: bool


def _services() -> Services:
    found: Services = current_app.extensions["fleet"]
    return found


def _limiter() -> FailureLimiter:
    limiter = current_app.extensions.get(LIMITER_EXTENSION)
    if limiter is None:
        settings = _services().ctx.settings
        limiter = FailureLimiter(
            time.monotonic,
            burst=settings.login_failure_burst,
            refill_per_s=settings.login_failure_refill_per_min / 60,
        )
        current_app.extensions[LIMITER_EXTENSION] = limiter
    return limiter


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"errors": [{"code": code, "message": message, "detail": None}]})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return response


def _basic_auth() -> tuple[str, str] | None:
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or form_holds_nul(MultiDict({name: password})):
        return None  # no token's name holds U+0000 (and PostgreSQL could not look it up)
    return name, password


def _refused(name: str) -> Response:
    """A failed login: 401, or 429 once the name or the address has failed too often."""
    _services().health.login_failed(name, request.remote_addr or "")
    limiter = _limiter()
    keys = (f"name:{name}", f"addr:{request.remote_addr}")
    wait = max(limiter.retry_after(k) for k in keys)
    for key in keys:
        limiter.record_failure(key)
    if wait > 0:
        log.warning("registry login throttled for %r from %s", name, request.remote_addr)
        response = _error(429, "TOOMANYREQUESTS", "too many failed logins; retry later")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    return _error(401, "UNAUTHORIZED", "authentication required: wrong name or password")


def token_response(
    minted: MintedToken, scopes: list[str], refresh_token: str | None = None
) -> Response:
    """The token endpoint's 200 answer around ``minted`` (the benchmark's floor uses it too)."""
    body: dict[str, Any] = {
        "token": minted.token,
        "access_token": minted.token,
        "expires_in": minted.expires_in,
        "issued_at": minted.issued_at,
    }
    if scopes:
        body["scope"] = " ".join(scopes)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return Response(compact_json(body), mimetype="application/json")


def _issue(
    services: Services,
    principal: Principal,
    scopes: list[str],
    parsed: list[Scope],
    offline: bool,
) -> Response:
    services.health.login_ok(principal.token, request.remote_addr or "")
    signing = services.signing
    minted = signing.registry_token(
        principal.token, access_claim(parsed, principal.allowed), principal.lifetime
    )
    refresh = None
    if offline:
        refresh = signing.refresh_token(
            RefreshClaims(principal.token, principal.slot, principal.fingerprint),
            principal.expiry.timestamp() if principal.expiry else None,
        )
    return token_response(minted, scopes, refresh)


def _check_service(services: Services, service: str | None) -> None:
    expected = services.ctx.settings.registry_service
    if service and service != expected:
        raise ValidationError(f"unknown service {service!r}: this endpoint serves {expected!r}")


def _query() -> tuple[str | None, list[str], str]:
    """``service``, every ``scope`` and ``offline_token`` of the query string, as werkzeug's
    ``request.args`` would read them, without building its multi-dict."""
    query = request.environ.get("QUERY_STRING", "")
    if len(query) > MAX_TOKEN_FORM_BYTES:
        raise ValidationError(f"the query string is longer than {MAX_TOKEN_FORM_BYTES} bytes")
    service = offline = None
    scopes = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "scope":
            scopes.append(value)
        elif key == "service" and service is None:
            service = value
        elif key == "offline_token" and offline is None:
            offline = value
    return service, scopes, offline or ""


def _scope_items(values: list[str]) -> list[str]:
    """Every scope of the ``scope`` parameters (one may hold several, space-separated), counted
    before any is parsed: too many is a 400 whatever the password."""
    items = [item for value in values for item in value.split()]
    if len(items) > MAX_SCOPES:
        raise ValidationError(
            f"at most {MAX_SCOPES} scopes may be asked for in one request; {len(items)} were"
        )
    return items


def _answer(services: Services, principal: Principal, scopes: list[str], offline: bool) -> Response:
    """The password was right: parse the scopes (a malformed one is a 400) and mint."""
    try:
        parsed = parse_scopes(scopes)
        return _issue(services, principal, scopes, parsed, offline)
    except ValidationError as exc:
        return _error(400, "INVALID_REQUEST", exc.message)


@blueprint.get("/oauth2/token")
def token_get() -> Response:
    services = _services()
    try:
        service, values, offline_token = _query()
        _check_service(services, service)
        scopes = _scope_items(values)
    except ValidationError as exc:
        return _error(400, "INVALID_REQUEST", exc.message)
    credentials = _basic_auth()
    if credentials is None:
        return _error(
            401,
            "UNAUTHORIZED",
            "authentication required: use HTTP Basic auth "
            "with the token name and one of its passwords",
        )
    name, password = credentials
    principal = services.registry_auth.authenticate(name, password)
    if principal is None:
        return _refused(name)
    return _answer(services, principal, scopes, offline_token.lower() == "true")


@blueprint.post("/oauth2/token")
def token_post() -> Response:
    services = _services()
    # The form holds the password, so it is read first, but never more of it than this.
    limit = request.max_content_length
    request.max_content_length = min(MAX_TOKEN_FORM_BYTES, limit or MAX_TOKEN_FORM_BYTES)
    form = request.form
    if form_holds_nul(form):
        return _error(400, "INVALID_REQUEST", NUL_MESSAGE)
    grant = form.get("grant_type", "")
    try:
        _check_service(services, form.get("service"))
        scopes = _scope_items([form.get("scope", "")])
    except ValidationError as exc:
        return _error(400, "INVALID_REQUEST", exc.message)
    if grant == "password":
        name = form.get("username", "")
        principal = services.registry_auth.authenticate(name, form.get("password", ""))
    elif grant == "refresh_token":
        claims = services.signing.read_refresh_token(form.get("refresh_token", ""))
        name = claims.token if claims else ""
        principal = services.registry_auth.authenticate_refresh(claims) if claims else None
    else:
        return _error(
            400, "UNSUPPORTED_GRANT_TYPE", "grant_type must be 'password' or 'refresh_token'"
        )
    if principal is None:
        return _refused(name)
    offline = grant == "password" and form.get("access_type") == "offline"
    return _answer(services, principal, scopes, offline or grant == "refresh_token")


@blueprint.get("/.well-known/jwks.json")
def jwks() -> Response:
    return jsonify(_services().signing.jwks())
