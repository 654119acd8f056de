"""Crash-safe file replacement: after a crash at any instant, a file holds either its old bytes
or its new bytes, never a mix, and never with a looser mode than asked.

``write_atomic(path, data)`` does the full sequence: a temporary file in the same directory,
created with ``O_CREAT | O_EXCL`` and the final mode (so it is never readable by others, not even
for an instant, and never ``chmod``-ed afterwards), write, ``fsync``, ``rename`` over the target,
``fsync`` of the directory so the rename itself survives a power cut.

A crash can leave the temporary file behind; ``remove_stale_temps(path)`` deletes those of one
target. Only the single writer of a file may call it (it would delete a temporary file that a
concurrent writer is still filling), so the agent calls it once, at start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600
TEMP_SUFFIX = ".tmp"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def temp_files(path: Path) -> list[Path]:
    """Temporary files that a write to ``path`` may have left behind."""
    prefix = _temp_prefix(path)
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(prefix) and p.name.endswith(TEMP_SUFFIX)
    )


def remove_stale_temps(path: Path) -> int:
    """Delete the leftovers of interrupted writes to ``path``; return how many there were."""
    removed = 0
    for leftover in temp_files(path):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path, data: bytes, mode: int = PRIVATE_MODE, *, overwrite: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file gets ``mode``
    (less any bits the umask removes, never more). With ``overwrite=False`` an existing
    ``path`` is left alone and ``FileExistsError`` raised (``link`` instead of ``rename``)."""
    temp = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    os.close(fd)
    try:
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(path.parent)
