"""The server's data directory is private: the directory 0700, every file in it 0600.

It holds the secret key, the signing keys and (on SQLite) the database. SQLite creates its
``-wal`` and ``-shm`` files with the database file's own mode, so the database is made 0600
before SQLite first opens it. ``fleet init`` also tightens what an earlier version (or a loose
umask) left open. The keys are written with ``write_private_file``: whole or not at all, and
never readable by others, not even for an instant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def write_private_file(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old bytes or the new ones: a new
    file beside it, created with ``mode`` (less the umask) and synced, is renamed over it, and
    the rename synced in turn."""
    staging = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(staging, flags, mode), "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def make_private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is left as is."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)


def sqlite_file(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def create_private_database(database_url: str) -> None:
    """On SQLite, create the database file empty with mode 0600 if it does not exist yet."""
    path = sqlite_file(database_url)
    if path is None:
        return
    path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


def tighten(data_dir: Path, database_url: str) -> list[str]:
    """Make the data directory 0700 and everything in it (and the SQLite files) 0600 / 0700;
    return what was changed. Symbolic links and entries of other users are left alone."""
    changed: list[str] = []
    paths = [data_dir, *sorted(data_dir.rglob("*"))]
    database = sqlite_file(database_url)
    if database is not None and database.exists():
        paths += [database, *(Path(f"{database}{suffix}") for suffix in SQLITE_SIDE_FILES)]
    uid = os.geteuid()
    for path in dict.fromkeys(paths):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or info.st_uid != uid:
            continue
        want = DIRECTORY_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
        if stat.S_IMODE(info.st_mode) != want:
            path.chmod(want)
            changed.append(f"{path}: {oct(stat.S_IMODE(info.st_mode))} -> {oct(want)}")
    for line in changed:
        log.warning("tightened %s", line)
    return changed
