"""Checking a token's name and password for the registry token endpoint.

This is on every pull's path. What a token's look-up found (its password hashes, status,
expiries and compiled scope map) is kept per process, and dropped whole as soon as any
credential may have changed anywhere: :mod:`fleet.services.credential_changes` tells that
without a query (the WAL-index header on SQLite, LISTEN/NOTIFY on PostgreSQL). On SQLite a
disabled token, a regenerated password or an edited scope map is seen by the very next request
on every worker; on PostgreSQL by this process's next request, and by other servers' once the
notification has reached them (microseconds; ``bench/notify_latency.py``). A password that
does not prove against what was kept is checked against the database again, so a new password
works at once and an unknown name costs the same work as a wrong password (one look-up, two
comparisons).

The look-up avoids the ORM: one indexed Core query fetches the token, its password slots and
its scope map's revision, on an autocommit connection kept open between requests (see
:class:`_KeptConnections`); compiled scope maps are cached per
``(map id, map creation time, revision)``. The creation time is in the key because an id alone
does not name one map for ever: SQLite hands a deleted map's id to the next map created, whose
revision starts again at 1.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from fleet.db.devices import Device, DeviceGroup
from fleet.db.models import ENABLED, ScopeMap, ScopeMapEntry, Token, TokenPassword
from fleet.domain.actions import Action
from fleet.domain.evaluation import EMPTY_SCOPE_MAP, CompiledScopeMap, compile_entries
from fleet.domain.explain import password_is_live
from fleet.services.context import ServiceContext
from fleet.services.credential_changes import ChangeWatch, watch_for
from fleet.services.signing import RefreshClaims, credential_fingerprint

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
# Compared against when the name is unknown, so that costs the same work as a wrong password.
_NO_HASH = "0" * 64

_tokens = Token.__table__  # type: ignore[attr-defined]
_passwords = TokenPassword.__table__  # type: ignore[attr-defined]
_maps = ScopeMap.__table__  # type: ignore[attr-defined]
_entries = ScopeMapEntry.__table__  # type: ignore[attr-defined]
_devices = Device.__table__  # type: ignore[attr-defined]
_groups = DeviceGroup.__table__  # type: ignore[attr-defined]

# A device's token carries its group's JWT lifetime; any other token has none (the setting's).
_LOOKUP = (
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
_ENTRIES = select(_entries.c.repository, _entries.c.action).where(
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
class _Slot:
    """One password slot of a token as the look-up found it, with its principal made ready
    (which holds the slot's name and expiry)."""

    stored: str
    enabled: bool
    principal: Principal


class _CredentialCache:
    """What the last look-up of each token found, all of it dropped when the epoch moves."""

    def __init__(self, size: int, max_age_s: float) -> None:
        self._size = size
        self._max_age_s = max_age_s
        self._epoch: int | None = None
        self._items: dict[str, tuple[float, tuple[_Slot, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, epoch: int | None) -> tuple[_Slot, ...] | None:
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

    def put(self, name: str, epoch: int | None, slots: tuple[_Slot, ...]) -> None:
        """Keep ``slots``, read after ``epoch`` was taken, unless the epoch has moved since."""
        if epoch is None or not slots:  # unknown names are never kept
            return
        with self._lock:
            if epoch != self._epoch:
                return
            if name not in self._items and len(self._items) >= self._size:
                del self._items[next(iter(self._items))]  # the oldest kept
            self._items[name] = (time.monotonic(), slots)


# (map id, map creation time, revision): one version of one map, never reused.
_MapVersion = tuple[int, datetime, int]


class _CompiledCache:
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


class _KeptConnections:
    """Autocommit connections kept open between the endpoint's look-ups.

    Checking a connection out of the engine's pool for each request costs PostgreSQL two round
    trips besides the query (the pre-ping, and the rollback when it is checked back in): more
    than the query itself. A kept autocommit connection costs neither, holds no transaction,
    snapshot or lock between queries, and sees every commit at once. At most ``keep`` stay idle;
    all are closed when the engine is disposed. A query that fails because the connection was
    lost is retried once on a fresh one from the pool, as the pre-ping would have done.
    """

    def __init__(self, engine: Engine, keep: int = KEPT_CONNECTIONS) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Connections made before a fork belong to the parent: never used nor closed here.
        self._inherited: list[Connection] = []
        self._compiled: dict[int, tuple[str, Any, list[Any]]] = {}
        event.listen(engine, "engine_disposed", self._on_dispose)

    def rows(self, statement: Select[Any], params: Mapping[str, object]) -> Sequence[Row[Any]]:
        try:
            return self._run(statement, params)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._run(statement, params)  # once more, on a fresh connection

    def _run(self, statement: Select[Any], params: Mapping[str, object]) -> Sequence[Row[Any]]:
        conn = self._take()
        try:
            rows = self._raw(conn, statement, params)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._give_back(conn)
        return rows

    def _raw(
        self, conn: Connection, statement: Select[Any], params: Mapping[str, object]
    ) -> Sequence[Any]:
        """The statement on the driver's own cursor: the same SQL SQLAlchemy would send, and
        its result conversions, without a third of a millisecond of per-call machinery."""
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            dialect = self._engine.dialect
            done = statement.compile(dialect=dialect)
            order = done.positiontup
            processors = [
                c.type._cached_result_processor(dialect, None) if c.name in CONVERTED else None
                for c in statement.selected_columns
            ]
            compiled = (str(done), order, processors)
            self._compiled[id(statement)] = compiled
        sql, order, processors = compiled
        args: Any = [params[k] for k in order] if order is not None else dict(params)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, args)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        if not any(processors):
            return fetched
        return [
            tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True))
            for row in fetched
        ]

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


class RegistryAuthService:
    def __init__(self, ctx: ServiceContext, watch: ChangeWatch | None = None) -> None:
        self.ctx = ctx
        self._compiled = _CompiledCache(COMPILED_CACHE_SIZE)
        self._connections = _KeptConnections(ctx.db.engine)
        self._watch = watch if watch is not None else watch_for(ctx.db.engine)
        self._kept = _CredentialCache(CREDENTIAL_CACHE_SIZE, CREDENTIAL_CACHE_MAX_AGE_S)

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The principal when ``password`` is a live password of an enabled token."""
        offered = self.ctx.hasher.hash(password)
        return self._match(name, lambda slot, stored: hmac.compare_digest(offered, stored))

    def authenticate_refresh(self, claims: RefreshClaims) -> Principal | None:
        """The principal when the refresh token's password is still the slot's live one."""
        return self._match(
            claims.token,
            lambda slot, stored: (
                slot == claims.slot
                and hmac.compare_digest(credential_fingerprint(stored), claims.fingerprint)
            ),
        )

    def _match(self, name: str, proves: Callable[[str, str], bool]) -> Principal | None:
        now = self.ctx.clock()
        epoch = self._watch.epoch()  # taken before any look-up whose result may be kept
        kept = self._kept.get(name, epoch)
        if kept is not None:
            principal = _proved(kept, proves, now)
            if principal is not None:
                return principal
        slots = self._look_up(name)
        self._kept.put(name, epoch, slots)
        return _proved(slots, proves, now)

    def _look_up(self, name: str) -> tuple[_Slot, ...]:
        rows = self._connections.rows(_LOOKUP, {"name": name})
        if not rows:
            return ()
        _status, map_id, map_created, revision, lifetime = rows[0][:5]
        scope = self._scope(map_id, map_created, revision)
        return tuple(
            _Slot(
                stored=stored,
                enabled=status == ENABLED,
                principal=Principal(
                    token=name,
                    slot=slot,
                    scope=scope,
                    fingerprint=credential_fingerprint(stored),
                    expiry=expiry,
                    lifetime=lifetime,
                ),
            )
            for status, _m, _c, _r, _l, slot, stored, expiry in rows
            if slot is not None
        )

    def _scope(
        self, map_id: int | None, map_created: datetime | None, revision: int | None
    ) -> CompiledScopeMap:
        if map_id is None or map_created is None or revision is None:
            return EMPTY_SCOPE_MAP
        key = (map_id, map_created, revision)
        compiled = self._compiled.get(key)
        if compiled is None:
            entries = self._connections.rows(_ENTRIES, {"map_id": map_id})
            compiled = compile_entries((r, Action(a)) for r, a in entries)
            self._compiled.put(key, compiled)
        return compiled


def _proved(
    slots: tuple[_Slot, ...], proves: Callable[[str, str], bool], now: datetime
) -> Principal | None:
    """The principal of the live slot ``proves``; both slots are always tried, and a missing
    one is tried against a hash nothing matches, so the work does not tell which exist."""
    matched = None
    for kept in slots:
        principal = kept.principal
        live = password_is_live(kept.enabled, principal.expiry, now)
        if proves(principal.slot, kept.stored) and live and matched is None:
            matched = principal
    for _ in range(2 - len(slots)):
        proves("", _NO_HASH)
    return matched
