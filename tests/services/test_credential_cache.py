"""The token endpoint keeps look-ups per process and drops them when any credential changes.

"Another server" here is a second :class:`Services` on the same database with an engine of its
own, as a second ``fleet serve`` would be: its writes reach this process only through the
change watch (NOTIFY on PostgreSQL, ``PRAGMA data_version`` on SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from fleet.domain.actions import Action
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from fleet.services.credential_changes import watch_for
from fleet.services.registry_auth import RegistryAuthService

ME = "test"
NAME = "MyToken"
REPO = "samples/hello-world"


class _CountingAuth(RegistryAuthService):
    """The real service, counting its database look-ups."""

    look_ups = 0

    def _look_up(self, name: str):  # type: ignore[no-untyped-def]
        self.look_ups += 1
        return super()._look_up(name)


@pytest.fixture
def auth(services: Services) -> _CountingAuth:
    return _CountingAuth(services.ctx)


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


class _FrozenWatch:
    """A watch that never signals: what the cache alone would do."""

    def epoch(self) -> int | None:
        return 1


def test_a_new_password_works_even_before_any_change_is_signalled(
    services: Services, clock
) -> None:  # type: ignore[no-untyped-def]
    p1, _ = _create(services)
    auth = RegistryAuthService(services.ctx, watch=_FrozenWatch())
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


@pytest.mark.postgres
def test_the_postgres_watch_survives_losing_its_connection(
    services: Services, other: Services, auth: _CountingAuth
) -> None:
    if services.ctx.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    p1, _ = _create(services)
    assert auth.authenticate(NAME, p1) is not None
    listener = auth._watch._dbapi.info.backend_pid  # type: ignore[attr-defined]
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
