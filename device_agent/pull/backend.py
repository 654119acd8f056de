"""What every pull backend gets and gives back (``factory`` picks one by name).

A backend pulls one image with the credentials it is handed and returns the manifest digest,
or raises ``PullFailed`` (``auth=True`` for a refused login or a denied repository: the caller
backs off). Backends check ``cancel`` between steps and stop a child process when it is set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from device_agent.pull.images import ImageRef
from device_agent.state.credentials import Credentials

AUTH_MARKERS = (
    "unauthorized",
    "authentication required",
    "invalid username/password",
    "denied",
    "no basic auth credentials",
)


class PullFailed(Exception):
    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.auth = auth


class PullCancelled(PullFailed):
    def __init__(self) -> None:
        super().__init__("cancelled: the agent is stopping")


@dataclass(frozen=True)
class PullRequest:
    image: ImageRef
    credentials: Credentials = field(repr=False)
    output: Path
    state_dir: Path
    tls_verify: bool
    platform: str
    timeout_s: float

    @property
    def login_server(self) -> str:
        return self.credentials.login_server


class Backend(Protocol):
    name: str

    def pull(self, request: PullRequest, cancel: threading.Event) -> str:
        """Pull ``request.image``; return its manifest digest (``sha256:...``)."""
        ...


def looks_like_auth_failure(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in AUTH_MARKERS)
