"""At most one scheduler acts at a time.

PostgreSQL: a session-level advisory lock held on a connection of its own for as long as this
process leads; if that connection drops, the lock goes with it and another server takes over.
SQLite: an exclusive ``flock`` on a file beside the database, so a single process leads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

# The lock's key names this deployment: two fleets in two schemas of one database each elect
# their own leader.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext('fleet-scheduler:' || current_schema()))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('fleet-scheduler:' || current_schema()))")


class Leadership(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...


class PostgresLeadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection, and with it the lock, is gone
                log.warning("lost the scheduler lock's connection; trying to take it again")
                self.release()
        conn = self.engine.connect()
        got = conn.execute(_TRY_LOCK)
        if got.scalar():
            conn.commit()
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute(_UNLOCK)
                self._conn.commit()
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class FileLeadership:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private like every file of the data directory (open() would follow the umask).
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handle = os.fdopen(fd, "ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def leadership_for(engine: Engine, data_dir: Path) -> Leadership:
    if engine.dialect.name == "postgresql":
        return PostgresLeadership(engine)
    return FileLeadership(data_dir / "scheduler.lock")
