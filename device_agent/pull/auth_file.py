"""A short-lived containers auth file (``auth.json`` format) for one child process, so that a
password never appears on a command line, where every local user could read it in ``ps``.

The file lives in the state directory (0700), is created 0600 and is removed when the child is
done, even on an exception.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

from device_agent.state.atomic import PRIVATE_MODE, write_atomic
from device_agent.state.credentials import Credentials

RUN_DIR = "run"
RUN_DIR_MODE = 0o700


def auth_document(credentials: Credentials) -> dict[str, object]:
    login = f"{credentials.username}:{credentials.password}".encode()
    return {"auths": {credentials.login_server: {"auth": base64.b64encode(login).decode()}}}


def helper_document(login_server: str, helper: str = "fleet") -> dict[str, object]:
    """An auth file that sends docker/podman to ``docker-credential-<helper>``."""
    return {"auths": {}, "credHelpers": {login_server: helper}}


@contextlib.contextmanager
def temporary_auth_file(state_dir: Path, credentials: Credentials) -> Iterator[Path]:
    directory = state_dir / RUN_DIR
    directory.mkdir(mode=RUN_DIR_MODE, exist_ok=True)
    path = directory / f"auth-{secrets.token_hex(6)}.json"
    write_atomic(path, json.dumps(auth_document(credentials)).encode(), PRIVATE_MODE)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_leftovers(state_dir: Path) -> int:
    """Auth files a killed agent left behind; called once at start."""
    removed = 0
    for leftover in (state_dir / RUN_DIR).glob("auth-*.json"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
