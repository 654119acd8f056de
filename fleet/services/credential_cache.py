"""Where the token endpoint gets a token's password slots: one small interface, two sources.

:class:`CredentialSource` is all :class:`~fleet.services.registry_auth.RegistryAuthService`
knows of it. ``find(name)`` answers the slots of a token (its password hashes, status, expiries
and compiled scope map) and says whether they were *kept* from an earlier look-up; ``read(name)``
always asks the database. The service proves a password against what ``find`` answered and, if
that was kept and does not prove it, against ``read``: a new password works at once, and an
unknown name costs the same work as a wrong password.

- :class:`CachedCredentials` (``FLEET_CREDENTIAL_CACHE=on``, the default) keeps each token's
  slots per process and drops them all as soon as any credential may have changed anywhere, as
  told by a :class:`~fleet.services.credential_changes.ChangeWatch`. It reads through
  :class:`KeptConnectionReader`: one indexed Core query on an autocommit connection kept open
  between requests, with compiled scope maps cached per map version.
- :class:`DatabaseCredentials` (``FLEET_CREDENTIAL_CACHE=off``) keeps nothing and uses only
  SQLAlchemy's ordinary API: a pooled connection per look-up, the scope map's entries read and
  compiled every time. Slower, and the plain reference the cached source must agree with.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, Dialect, Engine, Row, bindparam, event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from fleet.config import CREDENTIAL_CACHE_CHOICES
from fleet.db.devices import Device, DeviceGroup
from fleet.db.models import ENABLED, ScopeMap, ScopeMapEntry, Token, TokenPassword
from fleet.domain.actions import Action
from fleet.domain.evaluation import EMPTY_SCOPE_MAP, CompiledScopeMap, compile_entries
from fleet.services.credential_changes import ChangeWatch, watch_for
from fleet.services.signing import credential_fingerprint

COMPILED_CACHE_SIZE = 4096
# Tokens whose look-up is kept per process; the oldest kept is dropped first.
CREDENTIAL_CACHE_SIZE = 20_000
# A kept look-up is read again after this long even if no change was signalled: not the means
# of freshness, a bound on what a silently dead listening connection could keep stale.
CREDENTIAL_CACHE_MAX_AGE_S = 10.0
# The only look-up columns read as values; the rest are compared or used as cache keys raw.
CONVERTED = frozenset({"expiry"})
# Idle look-up connections kept per process: one per request served at the same time.
KEPT_CONNECTIONS = 4

_tokens = Token.__table__  # type: ignore[attr-defined]
_passwords = TokenPassword.__table__  # type: ignore[attr-defined]
_maps = ScopeMap.__table__  # type: ignore[attr-defined]
_entries = ScopeMapEntry.__table__  # type: ignore[attr-defined]
_devices = Device.__table__  # type: ignore[attr-defined]
_groups = DeviceGroup.__table__  # type: ignore[attr-defined]

# A device's token carries its group's JWT lifetime; any other token has none (the setting's).
LOOKUP = (
    select(
        _tokens.c.status,
        _tokens.c.scope_map_id,
        _maps.c.created_at,
        _maps.c.revision,
        _groups.c.jwt_lifetime_s,
        _passwords.c.slot,
        _passwords.c.secret_hash,
        _passwords.c.expiry,
    )
    .select_from(
        _tokens.outerjoin(_maps, _maps.c.id == _tokens.c.scope_map_id)
        .outerjoin(_passwords, _passwords.c.token_id == _tokens.c.id)
        .outerjoin(_devices, _devices.c.token_id == _tokens.c.id)
        .outerjoin(_groups, _groups.c.id == _devices.c.group_id)
    )
    .where(_tokens.c.name == bindparam("name"))
)
ENTRIES = select(_entries.c.repository, _entries.c.action).where(
    _entries.c.scope_map_id == bindparam("map_id")
)


@dataclass(frozen=True, slots=True)
class Principal:
    """A token that proved one of its passwords."""

    token: str
    slot: str
    scope: CompiledScopeMap
    fingerprint: str  # of the stored password hash, for refresh tokens
    expiry: datetime | None
    lifetime: int | None = None  # of its registry JWTs, if not the setting's (a device group's)

    def allowed(self, repository: str) -> frozenset[Action]:
        return self.scope.evaluate(repository)


@dataclass(frozen=True, slots=True)
class Slot:
    """One password slot of a token as a look-up found it, with its principal made ready
    (which holds the slot's name and expiry)."""

    stored: str
    enabled: bool
    principal: Principal


Slots = tuple[Slot, ...]


class Found(NamedTuple):
    """A token's slots (none: no such token), and whether they were kept from an earlier
    look-up, so may be older than the last commit. (A named tuple: made on every look-up that
    misses, and a third the cost of a frozen dataclass.)"""

    slots: Slots
    kept: bool


class SlotReader(Protocol):
    def read(self, name: str) -> Slots:
        """The token's slots as the database holds them now; none if there is no such token."""
        ...


class CredentialSource(SlotReader, Protocol):
    def find(self, name: str) -> Found:
        """The token's slots, kept or read."""
        ...


def _slots(
    name: str, rows: Sequence[Any], scope: Callable[[Any, Any, Any], CompiledScopeMap]
) -> Slots:
    """The slots of the look-up's rows (one per password slot, or one without when none)."""
    if not rows:
        return ()
    _status, map_id, map_created, revision, lifetime = rows[0][:5]
    compiled = scope(map_id, map_created, revision)
    return tuple(
        Slot(
            stored=stored,
            enabled=status == ENABLED,
            principal=Principal(
                token=name,
                slot=slot,
                scope=compiled,
                fingerprint=credential_fingerprint(stored),
                expiry=expiry,
                lifetime=lifetime,
            ),
        )
        for status, _m, _c, _r, _l, slot, stored, expiry in rows
        if slot is not None
    )


def _compiled(entries: Iterable[Any]) -> CompiledScopeMap:
    return compile_entries((repository, Action(action)) for repository, action in entries)


class DatabaseCredentials:
    """Reads the database on every look-up, through SQLAlchemy's ordinary API; keeps nothing."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find(self, name: str) -> Found:
        return Found(self.read(name), kept=False)

    def read(self, name: str) -> Slots:
        with self._engine.connect() as conn:
            rows = conn.execute(LOOKUP, {"name": name}).all()

            def scope(map_id: Any, _created: Any, _revision: Any) -> CompiledScopeMap:
                if map_id is None:
                    return EMPTY_SCOPE_MAP
                return _compiled(conn.execute(ENTRIES, {"map_id": map_id}).all())

            return _slots(name, rows, scope)


class _KeptSlots:
    """What the last look-up of each token found, all of it dropped when the epoch moves."""

    def __init__(self, size: int, max_age_s: float) -> None:
        self._size = size
        self._max_age_s = max_age_s
        self._epoch: int | None = None
        # Each kept as the Found that answers it, so a hit allocates nothing.
        self._items: dict[str, tuple[float, Found]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, epoch: int | None) -> Found | None:
        if epoch is None:
            return None
        if epoch != self._epoch:
            with self._lock:
                self._items = {}
                self._epoch = epoch
            return None
        found = self._items.get(name)
        if found is None or time.monotonic() - found[0] > self._max_age_s:
            return None
        return found[1]

    def put(self, name: str, epoch: int | None, slots: Slots) -> None:
        """Keep ``slots``, read after ``epoch`` was taken, unless the epoch has moved since."""
        if epoch is None or not slots:  # unknown names are never kept
            return
        with self._lock:
            if epoch != self._epoch:
                return
            if name not in self._items and len(self._items) >= self._size:
                del self._items[next(iter(self._items))]  # the oldest kept
            self._items[name] = (time.monotonic(), Found(slots, kept=True))


class CachedCredentials:
    """Keeps each token's slots until ``watch`` tells that a credential may have changed.

    The epoch is taken before the look-up whose result is kept, so a change committed while
    the look-up runs moves the epoch past what was kept and it is dropped at the next request.
    """

    def __init__(
        self,
        reader: SlotReader,
        watch: ChangeWatch,
        size: int = CREDENTIAL_CACHE_SIZE,
        max_age_s: float = CREDENTIAL_CACHE_MAX_AGE_S,
    ) -> None:
        self._reader = reader
        self._watch = watch
        self._kept = _KeptSlots(size, max_age_s)

    def find(self, name: str) -> Found:
        epoch = self._watch.epoch()
        kept = self._kept.get(name, epoch)
        if kept is not None:
            return kept
        slots = self._reader.read(name)
        self._kept.put(name, epoch, slots)
        return Found(slots, kept=False)

    def read(self, name: str) -> Slots:
        epoch = self._watch.epoch()
        slots = self._reader.read(name)
        self._kept.put(name, epoch, slots)
        return slots


# (map id, map creation time, revision): one version of one map, never reused. The creation
# time is in the key because an id alone does not name one map for ever: SQLite hands a
# deleted map's id to the next map created, whose revision starts again at 1.
_MapVersion = tuple[int, datetime, int]


class _CompiledMaps:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[_MapVersion, CompiledScopeMap] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _MapVersion) -> CompiledScopeMap | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: _MapVersion, value: CompiledScopeMap) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _DriverQuery:
    """A statement compiled once for one dialect: its SQL, the order of its parameters (for
    positional drivers) and the result conversion of each column (``None``: used raw)."""

    sql: str
    order: Sequence[str] | None
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> _DriverQuery:
        done = statement.compile(dialect=dialect)
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            if column.name in CONVERTED
            else None
            for column in statement.selected_columns
        )
        return cls(str(done), done.positiontup, processors)

    def rows(self, cursor: Any, params: Mapping[str, object]) -> Sequence[Any]:
        args: Any = [params[k] for k in self.order] if self.order is not None else dict(params)
        cursor.execute(self.sql, args)
        fetched = cursor.fetchall()
        if not any(self.processors):
            return fetched  # type: ignore[no-any-return]
        return [
            tuple(p(v) if p is not None else v for p, v in zip(self.processors, row, strict=True))
            for row in fetched
        ]


class KeptConnectionReader:
    """Reads a token's slots on autocommit connections kept open between look-ups.

    Two measured costs decide how (the figures, and how they were taken, are in
    bench/README.md under "One credential look-up in-process"; the endpoint's own cost per
    request is what ``python -m bench.token_endpoint`` reports):

    - Checking a connection out of the engine's pool per look-up costs PostgreSQL two round
      trips besides the query (the pre-ping, and the rollback when it is checked back in),
      several times the query on a kept connection. A kept autocommit connection holds no
      transaction, snapshot or lock between queries and sees every commit at once. At most
      ``keep`` stay idle; all are closed when the engine is disposed. A query that fails
      because the connection was lost is retried once on a fresh one from the pool, as the
      pre-ping would have done.
    - The query runs on the driver's own cursor (``Connection.connection.dbapi_connection``,
      SQLAlchemy's documented way to the DBAPI), with the SQL and the column conversions
      SQLAlchemy compiled for it once, cheaper than going through ``Connection.execute``.
    """

    def __init__(self, engine: Engine, keep: int = KEPT_CONNECTIONS) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Connections made before a fork belong to the parent: never used nor closed here.
        self._inherited: list[Connection] = []
        # Compiled on first use, once the dialect has met the server; keyed on the statement
        # itself (held here, so its identity is never reused).
        self._queries: dict[Select[Any], _DriverQuery] = {}
        self._maps = _CompiledMaps(COMPILED_CACHE_SIZE)
        event.listen(engine, "engine_disposed", self._on_dispose)

    def read(self, name: str) -> Slots:
        return _slots(name, self._rows(LOOKUP, {"name": name}), self._scope)

    def _scope(
        self, map_id: int | None, map_created: datetime | None, revision: int | None
    ) -> CompiledScopeMap:
        if map_id is None or map_created is None or revision is None:
            return EMPTY_SCOPE_MAP
        key = (map_id, map_created, revision)
        compiled = self._maps.get(key)
        if compiled is None:
            compiled = _compiled(self._rows(ENTRIES, {"map_id": map_id}))
            self._maps.put(key, compiled)
        return compiled

    def _rows(self, statement: Select[Any], params: Mapping[str, object]) -> Sequence[Row[Any]]:
        try:
            return self._run(statement, params)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._run(statement, params)  # once more, on a fresh connection

    def _run(self, statement: Select[Any], params: Mapping[str, object]) -> Sequence[Row[Any]]:
        conn = self._take()
        try:
            query = self._queries.get(statement)
            if query is None:
                query = self._queries[statement] = _DriverQuery.compile(statement, conn.dialect)
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                rows = query.rows(cursor, params)
            finally:
                cursor.close()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._give_back(conn)
        return rows  # type: ignore[return-value]

    def _take(self) -> Connection:
        with self._lock:
            if self._pid != os.getpid():
                self._inherited.extend(self._idle)
                self._idle = []
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self._keep and self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def _on_dispose(self, _engine: Engine) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


def credentials_for(engine: Engine, cache: str = "on") -> CredentialSource:
    """The source ``FLEET_CREDENTIAL_CACHE`` (``on`` or ``off``) asks for on ``engine``."""
    if cache not in CREDENTIAL_CACHE_CHOICES:
        choices = ", ".join(CREDENTIAL_CACHE_CHOICES)
        raise ValueError(f"the credential cache is one of {choices}, not {cache!r}")
    if cache == "off":
        return DatabaseCredentials(engine)
    return CachedCredentials(KeptConnectionReader(engine), watch_for(engine))
