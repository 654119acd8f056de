"""What ``fleet-agent run`` tells ``fleet-agent status``: a snapshot of the agent (connection,
credential version and expiry, refusals, pulls) written to ``status.json`` whenever it differs
from the last one written. Nothing in it is secret: the credential appears only as version,
slot, expiry, registry and user name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from device_agent.protocol import messages
from device_agent.protocol.messages import PullResult
from device_agent.runtime.handler import EnvelopeHandler
from device_agent.state import status_file
from device_agent.state.credentials import Credentials
from device_agent.state.enrollment import Enrollment

log = logging.getLogger(__name__)

MAX_IMAGES_TRACKED = 50


def credential_summary(credentials: Credentials | None) -> dict[str, Any] | None:
    if credentials is None:
        return None
    return {
        "version": credentials.version,
        "slot": credentials.slot,
        "expiry": credentials.expiry.isoformat() if credentials.expiry else None,
        "login_server": credentials.login_server,
        "username": credentials.username,
    }


class StatusTracker:
    def __init__(self, state_dir: Path, enrollment: Enrollment, handler: EnvelopeHandler) -> None:
        self._state_dir = state_dir
        self._enrollment = enrollment
        self._handler = handler
        self._running = False
        self._started_at: str | None = None
        self._connected = False
        self._connected_since: str | None = None
        self._last_pull: dict[str, Any] | None = None
        self._pulls: dict[str, dict[str, Any]] = {}
        self._written: dict[str, Any] | None = None

    def started(self) -> None:
        self._running, self._started_at = True, messages.now_iso()
        self.flush()

    def stopped(self) -> None:
        self._running, self._connected = False, False
        self.flush()

    def link(self, connected: bool) -> None:
        self._connected = connected
        self._connected_since = messages.now_iso() if connected else None

    def pulled(self, result: PullResult, *, auth_failed: bool) -> None:
        entry = {**result.wire(), "auth_failed": auth_failed}
        self._last_pull = entry
        self._pulls.pop(result.image, None)
        self._pulls[result.image] = entry
        while len(self._pulls) > MAX_IMAGES_TRACKED:
            self._pulls.pop(next(iter(self._pulls)))

    def snapshot(self) -> dict[str, Any]:
        store = self._handler.store
        staged = store.staged()
        return {
            "pid": os.getpid(),
            "running": self._running,
            "started_at": self._started_at,
            "device_id": self._enrollment.device_id,
            "broker": self._enrollment.mqtt.url,
            "connected": self._connected,
            "connected_since": self._connected_since,
            "credentials": credential_summary(store.current()),
            "previous": credential_summary(store.previous()),
            "staged_version": staged.version if staged else None,
            "versions": dict(store.state.versions),
            "refusals": dict(self._handler.refusals),
            "duplicates": self._handler.duplicates,
            "last_pull": self._last_pull,
            "pulls": dict(self._pulls),
        }

    def flush(self) -> None:
        """Write the snapshot if it changed. A failure (disk full) is logged, not raised: the
        status file only informs, and the agent's real work must go on."""
        snapshot = self.snapshot()
        if snapshot == self._written:
            return
        try:
            status_file.write_status(
                self._state_dir, {**snapshot, "updated_at": messages.now_iso()}
            )
        except OSError as error:
            log.warning("cannot write the status file: %s", error)
            return
        self._written = snapshot
