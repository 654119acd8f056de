"""Prove a registry password before trusting it: the token endpoint must answer ``200`` to a
plain ``GET tokenEndpoint?service=...`` with HTTP Basic auth (no scope: nothing is granted, the
login alone is checked).

``WORKS`` → the password may replace the current one; ``REFUSED`` (401/403) → it never will;
``UNAVAILABLE`` (unreachable, 429, 5xx, a redirect, anything else) → ask again later, with
backoff. A redirect is never followed (the password goes to the configured endpoint only) and
never counts as proof, whatever answers at the other end.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from enum import Enum

from device_agent.runtime import http_client
from device_agent.state.credentials import Credentials

log = logging.getLogger(__name__)

REFUSED_STATUSES = frozenset({401, 403})
CHECK_TIMEOUT_S = 15.0


class Verdict(Enum):
    WORKS = "works"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"


PasswordCheck = Callable[[Credentials], Verdict]


def check_url(token_endpoint: str, service: str) -> str:
    separator = "&" if urllib.parse.urlsplit(token_endpoint).query else "?"
    return f"{token_endpoint}{separator}{urllib.parse.urlencode({'service': service})}"


def check_password(
    credentials: Credentials,
    *,
    token_endpoint: str,
    service: str,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> Verdict:
    url = check_url(token_endpoint, service)
    auth = http_client.basic_auth(credentials.username, credentials.password)
    try:
        answer = http_client.request(
            "GET", url, headers={"Authorization": auth}, timeout_s=timeout_s
        )
    except http_client.Unreachable as error:
        log.warning("token endpoint %s unreachable: %s", token_endpoint, error)
        return Verdict.UNAVAILABLE
    if http_client.is_redirect(answer):
        log.warning("%s; will ask again", http_client.redirect_refused(answer, token_endpoint))
        return Verdict.UNAVAILABLE
    if answer.status == 200:
        return Verdict.WORKS
    if answer.status in REFUSED_STATUSES:
        return Verdict.REFUSED
    log.warning("token endpoint %s answered %d; will ask again", token_endpoint, answer.status)
    return Verdict.UNAVAILABLE


def endpoint_checker(token_endpoint: str, service: str) -> PasswordCheck:
    def check(credentials: Credentials) -> Verdict:
        return check_password(credentials, token_endpoint=token_endpoint, service=service)

    return check
