"""The JSON status messages the device publishes on its status topic (docs/protocol.md).
None of them ever carries a password."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from device_agent import __version__

CREDENTIALS = "credentials"
COMMAND = "command"
MAX_ERROR_CHARS = 500


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def hello(versions: Mapping[str, int]) -> dict[str, Any]:
    return {
        "type": "hello",
        "versions": {CREDENTIALS: versions.get(CREDENTIALS, 0), COMMAND: versions.get(COMMAND, 0)},
        "agent": __version__,
    }


def ack_credentials(version: int, slot: str) -> dict[str, Any]:
    return {"type": "ack", "kind": CREDENTIALS, "version": version, "slot": slot}


def ack_command(version: int) -> dict[str, Any]:
    return {"type": "ack", "kind": COMMAND, "version": version}


def reject(kind: str, version: int | None, reason: str) -> dict[str, Any]:
    return {"type": "reject", "kind": kind, "version": version, "reason": reason}


def pull(
    image: str, *, ok: bool, digest: str | None, error: str | None, at: str | None = None
) -> dict[str, Any]:
    return {
        "type": "pull",
        "image": image,
        "ok": ok,
        "digest": digest,
        "error": None if error is None else error[:MAX_ERROR_CHARS],
        "at": at or now_iso(),
    }


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode("utf-8")
