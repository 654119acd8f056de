"""RabbitMQ's management API, for the one thing fleet asks of it: close a login's connections.

``close_user_connections(username)`` closes every connection of that user (``DELETE
/api/connections/username/{username}``, with a reason RabbitMQ logs). That resource reads the
node's connection tracking, which knows a connection at once: ``DELETE /api/connections/{name}``
looks a connection up in the statistics database, which learns of it only at its next
statistics interval (5 s by default), so a device that reconnected just before would be
answered 404 there and stay connected. Every answer read is
bounded (``MAX_ANSWER_BYTES``); the credentials go in the Authorization header only.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fleet.mqtt.errors import BrokerError

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024
CLOSE_REASON = "fleet: the device was disabled or deleted"


class RabbitManagement:
    def __init__(self, url: str, username: str, password: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._auth = f"Basic {token}"

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self.url + path,
            method=method,
            headers={"Authorization": self._auth, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310
                body = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            if error.code == 404 and method == "DELETE":
                return None  # closed meanwhile
            raise BrokerError(
                f"RabbitMQ management API {method} {path.split('?')[0]}: HTTP {error.code}"
            ) from None
        except (OSError, urllib.error.URLError) as error:
            raise BrokerError(f"RabbitMQ management API at {self.url}: {error}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise BrokerError(f"RabbitMQ management API answer over {MAX_ANSWER_BYTES} bytes")
        return json.loads(body) if body else None

    def user_connections(self, username: str) -> list[str]:
        """The names of ``username``'s open connections."""
        path = "/api/connections/username/" + urllib.parse.quote(username, safe="")
        listed = self._request("GET", path)
        if not isinstance(listed, list):
            raise BrokerError("RabbitMQ management API: a user's connections are not a list")
        return [
            str(item["name"])
            for item in listed
            if isinstance(item, dict) and item.get("user") == username and "name" in item
        ]

    def close_user_connections(self, username: str) -> int:
        """Close every connection of ``username``; how many were listed just before."""
        names = self.user_connections(username)
        path = "/api/connections/username/" + urllib.parse.quote(username, safe="")
        self._request("DELETE", path, {"X-Reason": CLOSE_REASON})
        if names:
            log.info("closed %d broker connection(s) of %s", len(names), username)
        return len(names)
