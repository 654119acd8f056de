"""``status.json`` in the state directory: what ``fleet-agent run`` last knew (connected or not,
last pull, refusals), written atomically whenever it changes, read by ``fleet-agent status``.
It never holds a secret; it is kept 0600 all the same, like everything in the state directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from device_agent.state.atomic import write_atomic

FILENAME = "status.json"
MAX_FILE_BYTES = 256 * 1024


def write_status(state_dir: Path, status: dict[str, Any]) -> None:
    data = json.dumps(status, indent=2, sort_keys=True).encode("utf-8")
    write_atomic(state_dir / FILENAME, data)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status written, or None when there is none or it cannot be read."""
    try:
        with open(state_dir / FILENAME, "rb") as f:
            document = json.loads(f.read(MAX_FILE_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None
