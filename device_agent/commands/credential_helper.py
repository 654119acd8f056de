"""``docker-credential-fleet``: the Docker credential helper protocol over the agent's store.

docker, podman, skopeo, buildah and containerd's CRI can all call a helper named in the
``credHelpers`` of their auth file. The program reads the action from its first argument and
the request from stdin:

- ``get``: stdin holds a server URL; prints ``{"ServerURL", "Username", "Secret"}`` for the
  device's current (proven) credential when the server is the device's registry, else prints
  ``credentials not found in native keychain`` (the protocol's words) and exits 1;
- ``list``: prints ``{server: username}``;
- ``store`` and ``erase``: refused politely (exit 1): fleet-agent alone writes these
  credentials, and a ``docker login`` or ``logout`` must not pretend otherwise;
- ``version``.

The state directory is ``$FLEET_AGENT_STATE_DIR`` or ``/var/lib/fleet-agent``. The store is
read fresh on every call, so the newest password is used without any login.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from device_agent import __version__
from device_agent.state.store import StoreError, load_state

STATE_DIR_ENV = "FLEET_AGENT_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/fleet-agent")
NOT_FOUND = "credentials not found in native keychain"
MAX_INPUT_CHARS = 4096
REFUSAL = (
    "fleet-agent manages the credentials of this registry and rotates them itself: "
    "'{action}' is not supported (no 'docker login' or 'docker logout' is needed)"
)
USAGE = "usage: docker-credential-fleet get|list|store|erase|version"


def normalize_server(server: str) -> str:
    """``https://host:5000/v2/`` → ``host:5000`` (how docker and podman may name a registry)."""
    text = server.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    return text.split("/", 1)[0].lower()


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def _get(stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    server = stdin.read(MAX_INPUT_CHARS).strip()
    try:
        current = load_state(state_dir()).current
    except (StoreError, OSError) as error:
        print(f"docker-credential-fleet: cannot read the credential store: {error}", file=stderr)
        current = None
    if current is None or normalize_server(current.login_server) != normalize_server(server):
        print(NOT_FOUND, file=stdout)
        return 1
    answer = {"ServerURL": server, "Username": current.username, "Secret": current.password}
    json.dump(answer, stdout)
    stdout.write("\n")
    return 0


def _list(stdout: TextIO) -> int:
    try:
        current = load_state(state_dir()).current
    except (StoreError, OSError):
        current = None
    json.dump({current.login_server: current.username} if current else {}, stdout)
    stdout.write("\n")
    return 0


def run(argv: Sequence[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    action = argv[0] if argv else ""
    if action == "get":
        return _get(stdin, stdout, stderr)
    if action == "list":
        return _list(stdout)
    if action in ("store", "erase"):
        stdin.read(MAX_INPUT_CHARS)  # the caller writes a request; take it before refusing
        print(REFUSAL.format(action=action), file=stdout)
        return 1
    if action == "version":
        print(f"docker-credential-fleet (fleet-agent) {__version__}", file=stdout)
        return 0
    print(USAGE, file=stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv), sys.stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
