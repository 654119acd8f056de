"""The token endpoint keeps look-ups per process and drops them when any credential changes.

"Another server" here is a second :class:`Services` on the same database with an engine of its
own, as a second ``fleet serve`` would be, but in this process: on SQLite its writes reach the
endpoint through the WAL-index header, on PostgreSQL through the count of this process's own
commits (and the NOTIFY, which arrives a moment later). Writes from another process are
tested with a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, delete, text, update
from sqlmodel import SQLModel

from fleet.db.models import AuditEvent, Token
from fleet.domain.actions import Action
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.credential_cache import (
    CachedCredentials,
    DatabaseCredentials,
    KeptConnectionReader,
    Slots,
    credentials_for,
)
from fleet.services.credential_changes import ChangeWatch, LocalCommits, watch_for
from fleet.services.registry_auth import RegistryAuthService
from tests.support.timing import scaled, wait_until

ME = "test"
NOTIFY_DEADLINE_S = 5.0
NAME = "MyToken"
REPO = "samples/hello-world"


class _CountingReader:
    """The real reader, counting its database look-ups."""

    def __init__(self, inner: KeptConnectionReader) -> None:
        self.inner = inner
        self.look_ups = 0

    def read(self, name: str) -> Slots:
        self.look_ups += 1
        return self.inner.read(name)


class _CountingAuth(RegistryAuthService):
    """The real service on the cached source, with its watch and its reader's count at hand."""

    def __init__(self, services: Services, watch: ChangeWatch | None = None) -> None:
        engine = services.ctx.db.engine
        self.reader = _CountingReader(KeptConnectionReader(engine))
        self.watch = watch if watch is not None else watch_for(engine)
        super().__init__(services.ctx, CachedCredentials(self.reader, self.watch))

    @property
    def look_ups(self) -> int:
        return self.reader.look_ups


@pytest.fixture
def auth(services: Services) -> _CountingAuth:
    return _CountingAuth(services)


@pytest.fixture
def other(make_services) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    """Another server on the same database."""
    yield make_services()


def _create(services: Services) -> list[str]:
    rules = [RepositoryActions(REPO, ("content/read",))]
    token = services.tokens.create(NAME, repositories=rules, actor=ME)
    return [p.value for p in token.passwords if p.value is not None]


def test_a_kept_look_up_is_used_until_something_changes(
    services: Services, auth: _CountingAuth
) -> None:
    p1, p2 = _create(services)
    for _ in range(3):
        assert auth.authenticate(NAME, p1) is not None
        assert auth.authenticate(NAME, p2) is not None
    assert auth.look_ups == 1
    services.tokens.update(NAME, status="disabled", actor=ME)
    assert auth.authenticate(NAME, p1) is None
    assert auth.look_ups == 2


def test_wrong_passwords_and_unknown_names_always_ask_the_database(
    services: Services, auth: _CountingAuth
) -> None:
    p1, _ = _create(services)
    assert auth.authenticate(NAME, p1) is not None
    assert auth.authenticate(NAME, "wrong") is None
    assert auth.authenticate("Nobody", p1) is None
    assert auth.authenticate("Nobody", p1) is None  # unknown names are never kept
    assert auth.look_ups == 4


def test_changes_made_by_another_server_are_seen_by_the_next_request(
    services: Services, other: Services, auth: _CountingAuth, clock
) -> None:  # type: ignore[no-untyped-def]
    p1, p2 = _create(services)
    assert auth.authenticate(NAME, p1) is not None

    other.tokens.update(NAME, status="disabled", actor=ME)
    assert auth.authenticate(NAME, p1) is None
    other.tokens.update(NAME, status="enabled", actor=ME)
    assert auth.authenticate(NAME, p1) is not None

    _, fresh = other.tokens.generate_credentials(
        NAME, ["password1"], actor=ME, expiry=clock() + timedelta(days=1)
    )
    assert auth.authenticate(NAME, p1) is None  # the replaced password stops at once
    new = fresh[0].value
    assert new is not None and auth.authenticate(NAME, new) is not None

    principal = auth.authenticate(NAME, p2)
    assert principal is not None and principal.allowed("samples/nginx") == set()
    other.scope_maps.update(
        f"{NAME}-scope-map", add=[RepositoryActions("samples/nginx", ("content/read",))], actor=ME
    )
    principal = auth.authenticate(NAME, p2)
    assert principal is not None and principal.allowed("samples/nginx") == {Action.CONTENT_READ}

    clock.advance(days=1)  # expiry is checked on every request, kept or not
    assert auth.authenticate(NAME, new) is None

    other.tokens.delete(NAME, actor=ME)
    assert auth.authenticate(NAME, p2) is None


def test_back_to_back_changes_are_never_missed(
    services: Services, other: Services, auth: _CountingAuth
) -> None:
    """A change and the very next request, many times over: no stale answer, ever."""
    p1, _ = _create(services)
    for round_ in range(50):
        enabled = round_ % 2 == 1
        other.tokens.update(NAME, status="enabled" if enabled else "disabled", actor=ME)
        assert (auth.authenticate(NAME, p1) is not None) is enabled, f"round {round_}"
        assert (auth.authenticate(NAME, p1) is not None) is enabled, f"round {round_}, kept"


# Another process changes the database with plain SQL, as an operator's script might.
_DISABLE_BY_HAND = """
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("UPDATE tokens SET status = 'disabled' WHERE name = :n"), {"n": sys.argv[2]})
"""


def test_plain_sql_from_another_process_is_seen(
    services: Services, auth: _CountingAuth, db_url: str
) -> None:
    """SQLite: by the very next request. PostgreSQL: once the NOTIFY has been passed on, which
    the endpoint never waits for (bench/notify_latency.py measures how long that takes)."""
    p1, _ = _create(services)
    assert auth.authenticate(NAME, p1) is not None
    before = auth.watch.epoch()
    subprocess.run(
        [sys.executable, "-c", _DISABLE_BY_HAND, db_url, NAME], check=True, timeout=scaled(60)
    )
    if services.ctx.db.engine.dialect.name == "postgresql":
        wait_until(
            lambda: auth.watch.epoch() != before,
            "the NOTIFY from another process reached the watch",
            NOTIFY_DEADLINE_S,
            poll=0.001,
        )
    assert auth.watch.epoch() != before
    assert auth.authenticate(NAME, p1) is None


def test_the_sqlite_watch_reads_the_wal_index_and_falls_back_outside_wal_mode(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    for mode, expects_index in (("wal", True), ("delete", False)):
        engine = create_engine(f"sqlite:///{tmp_path / mode}.db")
        with engine.begin() as conn:
            conn.execute(text(f"PRAGMA journal_mode={mode}"))
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        watch = watch_for(engine)
        first = watch.epoch()
        assert first is not None and watch.epoch() == first
        assert watch.reads_wal_index is expects_index  # type: ignore[attr-defined]
        writer = create_engine(f"sqlite:///{tmp_path / mode}.db")
        for value in range(3):
            with writer.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
            moved = watch.epoch()
            assert moved is not None and moved != first, f"{mode}: a commit went unseen"
            first = moved
        writer.dispose()
        engine.dispose()


class _FrozenWatch:
    """A watch that never signals: what the cache alone would do."""

    def epoch(self) -> int | None:
        return 1


def test_a_new_password_works_even_before_any_change_is_signalled(
    services: Services, clock
) -> None:  # type: ignore[no-untyped-def]
    p1, _ = _create(services)
    auth = _CountingAuth(services, watch=_FrozenWatch())
    assert auth.authenticate(NAME, p1) is not None
    _, fresh = services.tokens.generate_credentials(
        NAME, ["password1"], actor=ME, expiry=clock() + timedelta(days=1)
    )
    new = fresh[0].value
    assert new is not None and auth.authenticate(NAME, new) is not None


def test_an_in_memory_sqlite_database_is_never_kept() -> None:
    engine = create_engine("sqlite://")
    assert watch_for(engine).epoch() is None
    engine.dispose()


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_postgres_watch_survives_losing_its_connection(
    services: Services, other: Services, auth: _CountingAuth
) -> None:
    p1, _ = _create(services)
    assert auth.authenticate(NAME, p1) is not None
    listener = auth.watch.listener_pid()  # type: ignore[attr-defined]
    assert listener is not None
    with other.ctx.db.engine.connect() as conn:
        # waits (up to 5 s) until the backend has ended, so its socket is closed
        ended = conn.execute(text(f"SELECT pg_terminate_backend({listener}, 5000)")).scalar()
        conn.commit()
    assert ended
    other.tokens.update(NAME, status="disabled", actor=ME)  # while nobody listens
    assert auth.authenticate(NAME, p1) is None
    other.tokens.update(NAME, status="enabled", actor=ME)
    assert auth.authenticate(NAME, p1) is not None
    before = auth.look_ups
    assert auth.authenticate(NAME, p1) is not None
    assert auth.look_ups == before  # listening again: kept look-ups are used again


@pytest.mark.parametrize(
    ("setting", "source"), [("on", CachedCredentials), ("off", DatabaseCredentials)]
)
def test_the_setting_picks_the_source(make_services, setting: str, source: type) -> None:  # type: ignore[no-untyped-def]
    services = make_services(credential_cache=setting)
    assert isinstance(services.registry_auth.credentials, source)
    p1, _ = _create(services)
    assert services.registry_auth.authenticate(NAME, p1) is not None
    services.tokens.update(NAME, status="disabled", actor=ME)
    assert services.registry_auth.authenticate(NAME, p1) is None


def test_an_unknown_cache_setting_is_refused(services: Services) -> None:
    with pytest.raises(ValueError, match="one of on, off, not 'maybe'"):
        credentials_for(services.ctx.db.engine, "maybe")


def test_the_plain_source_reads_the_database_every_time(services: Services) -> None:
    p1, _ = _create(services)
    plain = DatabaseCredentials(services.ctx.db.engine)
    auth = RegistryAuthService(services.ctx, plain)
    for _ in range(2):
        assert plain.find(NAME).kept is False
        assert auth.authenticate(NAME, p1) is not None
    services.tokens.update(NAME, status="disabled", actor=ME)
    assert auth.authenticate(NAME, p1) is None
    assert plain.find("Nobody") == plain.find("Nobody")
    assert plain.find("Nobody").slots == ()


def test_the_cached_and_the_plain_source_find_the_same_slots(services: Services, clock) -> None:  # type: ignore[no-untyped-def]
    """The cached source's driver-level conversions give what SQLAlchemy's own would."""
    _create(services)
    services.tokens.generate_credentials(
        NAME, ["password2"], actor=ME, expiry=clock() + timedelta(days=3)
    )
    engine = services.ctx.db.engine
    cached = credentials_for(engine, "on")
    plain = credentials_for(engine, "off")
    first = cached.find(NAME)
    assert first.kept is False and cached.find(NAME).kept is True
    expected = plain.find(NAME).slots
    assert [s.principal.expiry for s in expected] == [None, clock() + timedelta(days=3)]
    for found in (first.slots, cached.find(NAME).slots, cached.read(NAME)):
        assert [(s.stored, s.enabled) for s in found] == [(s.stored, s.enabled) for s in expected]
        for got, want in zip(found, expected, strict=True):
            p, q = got.principal, want.principal
            assert (p.token, p.slot, p.fingerprint, p.expiry, p.lifetime) == (
                q.token,
                q.slot,
                q.fingerprint,
                q.expiry,
                q.lifetime,
            )
            assert p.expiry is None or p.expiry.tzinfo is not None
            assert p.allowed(REPO) == q.allowed(REPO) == {Action.CONTENT_READ}


# Watches a WAL database, truncates its -shm file, and looks again. With the header mapped into
# memory, that second look was a SIGBUS that killed the process; now the watch answers None.
_TRUNCATE_THE_WAL_INDEX = """
import os, sys
from sqlalchemy import create_engine, text
from fleet.services.credential_changes import watch_for
database = sys.argv[1]
engine = create_engine(f"sqlite:///{database}")
with engine.begin() as conn:
    conn.execute(text("PRAGMA journal_mode=wal"))
    conn.execute(text("CREATE TABLE t (x INTEGER)"))
watch = watch_for(engine)
assert watch.epoch() is not None
os.truncate(database + "-shm", 0)
print("after truncation:", watch.epoch(), watch.epoch(), flush=True)
os._exit(0)  # SQLite's own connections would touch the truncated file when closed
"""


def test_a_truncated_wal_index_is_told_not_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_THE_WAL_INDEX, str(tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    assert "after truncation: None None" in done.stdout
    assert done.stderr.count("the WAL index is 0 bytes long") == 1  # said once, not per request


def test_local_commits_are_told_by_the_statements_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    SQLModel.metadata.create_all(engine)
    commits = LocalCommits()
    commits.watch(engine)
    commits.watch(engine)  # once is enough: a second call adds no listener
    tokens = Token.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(update(Token).where(Token.name == "x").values(status="disabled"))
    assert commits.count == 1
    with engine.begin() as conn:
        conn.execute(delete(tokens).where(tokens.c.name == "x"))
        conn.execute(update(tokens).where(tokens.c.name == "y").values(status="disabled"))
    assert commits.count == 2  # one transaction, one change
    with engine.begin() as conn:  # another table, a read, and SQL text naming the table
        conn.execute(delete(AuditEvent))
        conn.execute(text("SELECT name FROM tokens"))
    assert commits.count == 2
    with engine.connect() as conn:  # rolled back: nothing changed
        conn.execute(update(tokens).values(status="disabled"))
        conn.rollback()
    with engine.begin() as conn:
        pass
    assert commits.count == 2
    engine.dispose()
