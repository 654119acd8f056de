"""The state directory holds the device's private keys, its credentials and the server's
signing key: what is in it is trusted, so nobody else may be able to put anything there.

- missing: created 0700;
- ours and only readable by others (0755): tightened to 0700 (nothing could have been
  planted, and the key files themselves are 0600);
- writable by group or others, or owned by another user: refused, untouched, with a message
  saying what to do, because any file in it may have been planted or replaced.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

STATE_DIR_MODE = 0o700


class StateDirError(Exception):
    """The state directory cannot be trusted."""


def secure_state_dir(path: Path) -> Path:
    """Make sure ``path`` is a private directory of this user; return it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=STATE_DIR_MODE, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"the state directory {path} is not a directory")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise StateDirError(
            f"the state directory {path} is owned by uid {info.st_uid}, not by this user "
            f"(uid {uid}): its files cannot be trusted; use a directory of your own"
        )
    current = stat.S_IMODE(info.st_mode)
    if current & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateDirError(
            f"the state directory {path} is writable by group or others (mode {current:#o}): "
            "any file in it may have been planted; check its contents, then "
            f"`chmod 700 {path}`, or enroll into a new directory"
        )
    if current != STATE_DIR_MODE:
        path.chmod(STATE_DIR_MODE)
        log.warning(
            "tightened the state directory %s from %#o to %#o", path, current, STATE_DIR_MODE
        )
    return path
