"""The agent's small HTTP needs (enrollment, password checks) on the standard library alone:
``urllib`` costs no memory that paho's ``ssl`` import has not already paid, where ``requests``
would add megabytes to the resident agent (``python -m bench.agent_footprint``). The built-in
image puller uses ``requests``, loaded only when it runs.

Every answer comes back as a ``Response`` whatever its status; only a server that cannot be
reached (DNS, refused, TLS, timeout) raises ``Unreachable``.

Redirects are never followed: these requests carry a password or an enrollment secret, which go
to the configured URL and nowhere else (urllib would resend every header, ``Authorization``
included, to whatever a ``Location`` names). A 3xx comes back as a ``Response``; callers refuse
it with ``redirect_refused``, naming where it pointed.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from device_agent import __version__

DEFAULT_TIMEOUT_S = 15.0
MAX_BODY_BYTES = 1024 * 1024
MAX_LOCATION_CHARS = 200
USER_AGENT = f"fleet-agent/{__version__}"
ALLOWED_SCHEMES = ("http", "https")


class Unreachable(Exception):
    """No HTTP answer at all; the message names the cause, never a credential."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def json(self) -> Any:
        """The body as JSON; ``None`` when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into its own answer (urllib then raises HTTPError with the 3xx)."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def is_redirect(answer: Response) -> bool:
    return 300 <= answer.status < 400


def redirect_refused(answer: Response, what: str) -> str:
    """The message for a redirect not followed, naming where it pointed (never a credential)."""
    location = answer.headers.get("Location") or answer.headers.get("location") or "nowhere"
    return (
        f"{what} answered {answer.status} redirecting to {location[:MAX_LOCATION_CHARS]}; "
        "not followed: credentials are sent to the configured URL only"
    )


def check_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ALLOWED_SCHEMES or not parsed.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def request(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Response:
    """One request; a redirect is returned, never followed (see the module's docstring)."""
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        sent["Content-Type"] = "application/json"
    prepared = urllib.request.Request(  # noqa: S310 - check_url allows http(s) only
        check_url(url), data=data, headers=sent, method=method
    )
    try:
        with _OPENER.open(prepared, timeout=timeout_s) as answer:
            return Response(answer.status, answer.read(MAX_BODY_BYTES), dict(answer.headers))
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read(MAX_BODY_BYTES), dict(error.headers or {}))
    except urllib.error.URLError as error:
        raise Unreachable(_reason(error.reason)) from None
    except (TimeoutError, ConnectionError, ssl.SSLError) as error:
        raise Unreachable(_reason(error)) from None


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or reason.__class__.__name__
