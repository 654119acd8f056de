"""Telling cheaply whether any credential may have changed since the last look.

The token endpoint keeps what it read of a token (its password hashes, status, expiries and
compiled scope map) between requests. That is only safe if every worker of every server learns
of a change before its next request, so each process keeps a *watch* whose :meth:`epoch` moves
whenever the stored credentials may have changed, and the endpoint drops everything it kept
when it moves:

* **PostgreSQL**: statement triggers on ``tokens``, ``token_passwords``, ``scope_maps``,
  ``scope_map_entries`` (migration 0004) and ``device_groups`` (0010) ``NOTIFY
  fleet_credentials`` with the table's schema, delivered when the writing transaction commits.
  The watch listens (``LISTEN``) on a connection of its own and, per request, reads what has
  arrived on its socket without waiting: no round trip. The writing backend signals every
  listener before its ``COMMIT`` returns; a listener passes the notification on as soon as it
  next runs, which takes microseconds (see ``bench/notify_latency.py``), so another server sees
  a change that much later. That is far inside what a change can mean anyway: a registry JWT
  issued a moment before the change stays valid for its whole lifetime (60 s by default for a
  device). Changes this process commits itself are seen by its very next request
  (:class:`LocalCommits`). An empty query per request would close even that gap
  (PostgreSQL passes notifications on before it reads a listener's next command), but it costs a
  round trip per request (what it took off the endpoint's throughput: bench/README.md, "One
  credential look-up in-process").
* **SQLite**: the WAL-index header at the start of ``<database>-shm``, which every commit
  rewrites, read with one ``pread`` and compared with the last one seen. Outside WAL mode,
  ``PRAGMA data_version`` (SQLite's documented means of invalidating a cache). Either moves on
  every write, device status included, which only costs a re-read.

A watch that cannot tell (a lost listening connection being re-made, an in-memory database)
answers ``None``, and the caller reads the database as if it kept nothing. Connections are made
lazily per process, so a watch made before gunicorn forks its workers is safe to inherit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlalchemy.sql.dml import UpdateBase

log = logging.getLogger(__name__)

CHANNEL = "fleet_credentials"
# SQLite's WAL-index header: the version it starts with, and the size of one of its two copies.
WAL_INDEX_VERSION = 3007000
WAL_INDEX_HEADER = 48
# The tables whose changes can change a token's answer; migrations 0004 and 0010 put triggers
# on them (a device group holds its device tokens' JWT lifetime).
WATCHED_TABLES = ("tokens", "token_passwords", "scope_maps", "scope_map_entries", "device_groups")


class ChangeWatch(Protocol):
    def epoch(self) -> int | None:
        """A number that differs from the last one whenever a credential may have changed
        in between, or ``None`` when that cannot be told now."""
        ...


class _Blind:
    """For databases a second connection cannot see (SQLite in memory): never tells."""

    def epoch(self) -> int | None:
        return None


class _PerProcess:
    """One connection of the watch's own per process, made on first use, closed on dispose."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pid = 0
        self._dbapi: Any = None
        event.listen(engine, "engine_disposed", lambda _engine: self._drop())

    def _connection(self) -> Any:
        if self._pid != os.getpid():  # made in the parent before a fork: not ours to use
            self._dbapi = None
            self._pid = os.getpid()
        if self._dbapi is None:
            fairy = self._engine.raw_connection()
            fairy.detach()  # ours for good: the pool neither resets nor hands it out
            dbapi = fairy.dbapi_connection
            try:
                self._opened(dbapi)
            except BaseException:
                with contextlib.suppress(Exception):
                    dbapi.close()
                raise
            self._dbapi = dbapi
        return self._dbapi

    def _opened(self, dbapi: Any) -> None:
        """Prepare a new connection."""

    def _drop(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        """Close this process's connection; the next look makes a new one."""
        dbapi, self._dbapi = self._dbapi, None
        if dbapi is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                dbapi.close()


class _SqliteWatch(_PerProcess):
    """Reads the WAL-index header that every SQLite connection checks before it reads.

    In WAL mode each commit rewrites the header at the start of ``<database>-shm`` (two copies
    of 48 bytes, written second-then-first): its frame count, change counter and checksums
    change with every transaction. Comparing it with the last one seen is what SQLite itself
    does to know whether its page cache is still good. ``PRAGMA data_version`` would tell the
    same, but it takes and releases a lock on the file (two ``fcntl`` calls, which cost more
    than the whole look-up on a busy server). The layout is fixed across SQLite versions because
    connections of different versions share one file (https://www.sqlite.org/walformat.html).

    The header is read with ``os.pread`` on a descriptor kept open, not through a memory map:
    a mapped file that someone truncates kills the worker with SIGBUS at the next read, where
    ``pread`` returns short and the watch answers ``None`` (tested in a subprocess). SQLite's
    own connections map the same file, so such a truncation still ends the process at SQLite's
    next read of the WAL index; the watch no longer does it first, nor on requests that would
    not have touched SQLite. The system call costs a fraction of a microsecond more than the
    mapped read, nothing beside a request's CPU (both measured: bench/README.md, "The credential
    cache behind one interface"). The watch's own open
    connection keeps the file in use, so SQLite never re-makes it under the descriptor. When
    the database is not in WAL mode, or the header is not the known version, the watch asks
    ``PRAGMA data_version`` instead.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._index: int | None = None  # the -shm file's descriptor
        self._seen: bytes | int | None = None
        self._count = 0

    @property
    def reads_wal_index(self) -> bool:
        """Whether this process's watch reads the WAL-index header (else ``data_version``)."""
        return self._index is not None

    def _opened(self, dbapi: Any) -> None:
        mode = dbapi.execute("PRAGMA journal_mode").fetchone()[0]
        dbapi.execute("PRAGMA data_version").fetchone()  # a first read makes the WAL index
        self._close_index()  # one inherited from the parent: this process's copy of it
        self._index = _open_wal_index(self._engine.url.database or "") if mode == "wal" else None
        self._seen = None
        self._count += 1  # whatever was kept before this connection may be stale

    def epoch(self) -> int | None:
        with self._lock:
            try:
                dbapi = self._connection()
                index = self._index
                if index is None:
                    seen: bytes | int = dbapi.execute("PRAGMA data_version").fetchone()[0]
                else:
                    header = os.pread(index, 2 * WAL_INDEX_HEADER, 0)
                    if len(header) < 2 * WAL_INDEX_HEADER:
                        self._cut_short(len(header))
                        return None
                    seen = header[:WAL_INDEX_HEADER]
                    if seen != header[WAL_INDEX_HEADER:]:
                        return None  # a commit is writing the header right now
            except Exception:  # a broken connection: tell nothing, make a new one next time
                log.warning("cannot read the SQLite change counter", exc_info=True)
                self._close()
                return None
            if seen != self._seen:
                self._seen = seen
                self._count += 1
            return self._count

    def _cut_short(self, length: int) -> None:
        """The -shm file was truncated under a live database (by hand: SQLite never does while
        the watch's connection is open). Tell nothing until it is whole again, and leave the
        connection open: closing it is what would make SQLite touch the truncated file."""
        if self._seen is not None:
            log.warning("the WAL index is %d bytes long; not keeping credentials", length)
        self._seen = None

    def _close(self) -> None:
        self._close_index()
        super()._close()

    def _close_index(self) -> None:
        index, self._index = self._index, None
        if index is not None:
            with contextlib.suppress(OSError):
                os.close(index)


def _open_wal_index(database: str) -> int | None:
    """A descriptor of ``database``'s WAL index, if its header is the known version."""
    try:
        index = os.open(f"{database}-shm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        log.info("no WAL index to watch for %s; using PRAGMA data_version", database)
        return None
    try:
        version = os.pread(index, 4, 0)
    except OSError:
        version = b""
    if len(version) < 4 or int.from_bytes(version, sys.byteorder) != WAL_INDEX_VERSION:
        os.close(index)
        log.info("unknown WAL index version for %s; using PRAGMA data_version", database)
        return None
    return index


class _PostgresWatch(_PerProcess):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._schema = ""
        self._count = 0
        LOCAL_COMMITS.watch(engine)

    def listener_pid(self) -> int | None:
        """The server process of this process's listening connection, if one is open."""
        with self._lock:
            dbapi = self._dbapi if self._pid == os.getpid() else None
            return None if dbapi is None else int(dbapi.info.backend_pid)

    def _opened(self, dbapi: Any) -> None:
        dbapi.autocommit = True
        with dbapi.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            self._schema = cursor.fetchone()[0] or ""
            cursor.execute(f"LISTEN {CHANNEL}")
        # Whatever was kept before this LISTEN took effect may be stale: start afresh.
        self._count += 1

    def epoch(self) -> int | None:
        with self._lock:
            try:
                pgconn = self._connection().pgconn
                # Never blocks: libpq's socket is non-blocking. Twice, because a server that
                # ends the connection sends a message first and the end of the stream after
                # it, and only reading that end tells this connection is lost.
                pgconn.consume_input()
                pgconn.consume_input()
                while (note := pgconn.notifies()) is not None:
                    if note.extra.decode() == self._schema:
                        self._count += 1
            except Exception:
                log.warning("lost the credential change listener; reconnecting", exc_info=True)
                self._close()
                return None
            return self._count + LOCAL_COMMITS.count


class LocalCommits:
    """Credential changes this process commits itself, on any of its engines, counted as they
    commit, so this process's next request sees them without waiting for PostgreSQL to pass the
    notification back.

    A write is noticed from the statement SQLAlchemy executes (an ORM flush or a Core
    ``insert``/``update``/``delete``, whose ``table`` is named), not from its SQL text; plain
    SQL text run by hand is seen through the notification alone, a moment later. One count
    serves the whole process, because two engines on one database in one process (the tests'
    "other server", a CLI call made in-process) must see each other's commits as one would its
    own. (SQLAlchemy's commit event comes just before the commit: a request on another thread
    in that instant may keep the old answer, until the notification of this very commit
    arrives, as any other server's would.)
    """

    _TOUCHED = "fleet_credentials_touched"

    def __init__(self) -> None:
        self.count = 0

    def watch(self, engine: Engine) -> None:
        if event.contains(engine, "commit", self._on_commit):
            return
        event.listen(engine, "after_execute", self._on_execute)
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "rollback", self._on_rollback)

    def _on_execute(self, conn: Any, statement: Any, *_args: Any) -> None:
        if isinstance(statement, UpdateBase):
            table = getattr(statement, "table", None)
            if getattr(table, "name", None) in WATCHED_TABLES:
                conn.info[self._TOUCHED] = True

    def _on_commit(self, conn: Any) -> None:
        if conn.info.pop(self._TOUCHED, False):
            self.count += 1

    def _on_rollback(self, conn: Any) -> None:
        conn.info.pop(self._TOUCHED, None)


LOCAL_COMMITS = LocalCommits()


def watch_for(engine: Engine) -> ChangeWatch:
    name = engine.dialect.name
    if name == "postgresql":
        return _PostgresWatch(engine)
    if name == "sqlite":
        database = engine.url.database or ""
        if database in ("", ":memory:") or "mode=memory" in str(engine.url):
            return _Blind()
        return _SqliteWatch(engine)
    return _Blind()
