"""The agent's small HTTP needs (enrollment, password checks) on the standard library alone:
``urllib`` costs no memory that paho's ``ssl`` import has not already paid, where ``requests``
adds about 6 MB to the resident agent. The built-in image puller uses ``requests``, loaded only
when it runs.

Every answer comes back as a ``Response`` whatever its status; only a server that cannot be
reached (DNS, refused, TLS, timeout) raises ``Unreachable``.
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
    """One request; redirects are followed for GET only (urllib's rule)."""
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        sent["Content-Type"] = "application/json"
    prepared = urllib.request.Request(  # noqa: S310 - check_url allows http(s) only
        check_url(url), data=data, headers=sent, method=method
    )
    try:
        with urllib.request.urlopen(prepared, timeout=timeout_s) as answer:  # noqa: S310
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
