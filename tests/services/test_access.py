"""The access explainer's service on SQLite and PostgreSQL: a token's map, status and
passwords, a scope map alone, clear errors for bad input, a constant number of queries, and a
seeded sweep proving it agrees with the token endpoint's own password check and evaluation."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from fleet.db.models import AuditEvent
from fleet.domain.actions import Action
from fleet.domain.errors import NotFoundError, ValidationError
from fleet.domain.rules import RepositoryActions
from fleet.services import Services
from tests.conftest import FakeClock
from tests.support.statements import counted

ME = "test"
REFERENCE = [
    RepositoryActions("sample/*", ("content/read",)),
    RepositoryActions("sample/teama/*", ("content/write",)),
    RepositoryActions("sample/teama/projectb", ("content/delete",)),
    RepositoryActions("other/x", ("metadata/read",)),
]


@pytest.fixture
def fleet(services: Services) -> Services:
    services.scope_maps.create("reference-map", REFERENCE, actor=ME)
    services.tokens.create("robot-1", scope_map="reference-map", actor=ME)
    return services


def _rows(view: Any) -> list[tuple[str, tuple[str, ...], bool]]:
    return [(r.repository, r.actions, r.grants) for r in view.matched]


def test_a_token_allowed_by_the_rules_that_match(fleet: Services) -> None:
    view = fleet.access.explain(
        token="robot-1", repository="sample/teama/projectb", action="content/delete"
    )
    assert view.allowed and view.reasons == ()
    assert (view.token, view.token_status, view.scope_map) == (
        "robot-1",
        "enabled",
        "reference-map",
    )
    assert view.scope_map_type == "UserDefined"
    assert _rows(view) == [
        ("sample/*", ("content/read",), False),
        ("sample/teama/*", ("content/write",), False),
        ("sample/teama/projectb", ("content/delete",), True),
    ]
    assert view.granted == ("content/read", "content/write", "content/delete")
    assert [p.name for p in view.passwords] == ["password1", "password2"]
    assert all(p.live for p in view.passwords)
    # The map's whole table, the matching rows marked.
    assert [(r.repository, r.matches, r.grants) for r in view.rules] == [
        ("other/x", False, False),
        ("sample/*", True, False),
        ("sample/teama/*", True, False),
        ("sample/teama/projectb", True, True),
    ]


def test_denials_say_why(fleet: Services) -> None:
    none = fleet.access.explain(token="robot-1", repository="nobody/x", action="content/read")
    assert not none.allowed and none.matched == ()
    assert [(r.code, r.message) for r in none.reasons] == [
        ("NoRuleMatched", "no rule of scope map 'reference-map' matches repository 'nobody/x'")
    ]
    one = fleet.access.explain(token="robot-1", repository="sample/y", action="content/write")
    assert [r.code for r in one.reasons] == ["ActionNotGranted"]
    assert one.reasons[0].message == (
        "the one rule of scope map 'reference-map' that matches 'sample/y' (sample/*) does not "
        "grant content/write; it grants content/read"
    )
    two = fleet.access.explain(token="robot-1", repository="sample/teama/c", action="metadata/read")
    assert two.reasons[0].message.startswith("2 rules of scope map 'reference-map' match")


def test_a_disabled_token_is_denied_everything(fleet: Services) -> None:
    fleet.tokens.update("robot-1", status="disabled", actor=ME)
    view = fleet.access.explain(token="robot-1", repository="sample/x", action="content/read")
    assert not view.allowed
    assert [r.code for r in view.reasons] == ["TokenDisabled"]
    assert "is disabled: it is denied everything" in view.reasons[0].message
    assert _rows(view) == [("sample/*", ("content/read",), True)]  # what it would grant
    assert not any(p.live for p in view.passwords)


def test_expired_or_missing_passwords_deny_everything(fleet: Services, clock: FakeClock) -> None:
    fleet.tokens.generate_credentials(
        "robot-1", ["password1"], expiry=clock.now + timedelta(hours=1), actor=ME
    )
    fleet.tokens.delete_credential("robot-1", "password2", actor=ME)
    live = fleet.access.explain(token="robot-1", repository="sample/x", action="content/read")
    assert live.allowed
    clock.advance(hours=2)
    view = fleet.access.explain(token="robot-1", repository="sample/x", action="content/read")
    assert not view.allowed
    assert [r.code for r in view.reasons] == ["NoLivePassword"]
    assert "password1 expired at 2026-01-01T01:00:00+00:00, no password2" in (
        view.reasons[0].message
    )
    assert [(p.name, p.live) for p in view.passwords] == [("password1", False)]


def test_a_token_whose_map_was_deleted(fleet: Services) -> None:
    fleet.scope_maps.delete("reference-map", actor=ME)
    view = fleet.access.explain(token="robot-1", repository="sample/x", action="content/read")
    assert view.scope_map is None and view.rules == ()
    assert [r.code for r in view.reasons] == ["NoScopeMap"]


def test_a_scope_map_alone_and_a_system_map(fleet: Services) -> None:
    view = fleet.access.explain(
        scope_map="reference-map", repository="sample/x", action="content/read"
    )
    assert view.allowed and view.token is None and view.passwords == ()
    pull = fleet.access.explain(
        scope_map="_repositories_pull", repository="any/thing", action="content/write"
    )
    assert pull.scope_map_type == "SystemDefined"
    assert _rows(pull) == [("*", ("content/read",), False)]
    assert [r.code for r in pull.reasons] == ["ActionNotGranted"]


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({}, ValidationError, "InvalidRequest"),
        ({"token": "robot-1", "scope_map": "reference-map"}, ValidationError, "InvalidRequest"),
        ({"token": "t" * 65}, ValidationError, "InvalidName"),
        ({"scope_map": "m" * 65}, ValidationError, "InvalidName"),
        ({"token": "robot-1", "repository": "Sample/X"}, ValidationError, "InvalidRepositoryName"),
        ({"token": "robot-1", "repository": "sample/*"}, ValidationError, "InvalidRepositoryName"),
        ({"token": "robot-1", "repository": "a" * 256}, ValidationError, "InvalidRepositoryName"),
        ({"token": "robot-1", "repository": "a" * 10**5}, ValidationError, "InvalidRepositoryName"),
        ({"token": "robot-1", "action": "pull"}, ValidationError, "InvalidAction"),
        ({"token": "robot-1", "action": "x" * 10_000}, ValidationError, "InvalidAction"),
        ({"token": "nobody-here"}, NotFoundError, "TokenNotFound"),
        ({"scope_map": "nothing-here"}, NotFoundError, "ScopeMapNotFound"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    fleet: Services, kwargs: dict[str, str], error: type[Exception], code: str
) -> None:
    before = _audit_count(fleet)
    args = {"repository": "sample/x", "action": "content/read", **kwargs}
    with pytest.raises(error) as raised:
        fleet.access.explain(**args)
    assert raised.value.code == code  # type: ignore[attr-defined]
    assert len(raised.value.message) < 500  # type: ignore[attr-defined]  # no flood echoed
    assert _audit_count(fleet) == before


def _audit_count(services: Services) -> int:
    with services.ctx.db.session() as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


def test_a_constant_number_of_queries_whatever_the_map_size(fleet: Services) -> None:
    big = [RepositoryActions(f"team{i}/*", ("content/read", "metadata/read")) for i in range(200)]
    fleet.scope_maps.create("big-map", big, actor=ME)
    fleet.tokens.create("robot-2", scope_map="big-map", actor=ME)
    counts = []
    for name in ("robot-1", "robot-2"):
        with counted(fleet) as seen:
            fleet.access.explain(token=name, repository="team7/x", action="content/read")
        counts.append(len([q for q in seen if q.lstrip().upper().startswith("SELECT")]))
    assert counts == [3, 3]


# -- the explainer agrees with the token endpoint -----------------------------------------
COMPONENTS = ("a", "b", "ab", "x-1")


def _repository(rng: random.Random) -> str:
    return "/".join(rng.choice(COMPONENTS) for _ in range(rng.randint(1, 3)))


def _rules(rng: random.Random) -> list[RepositoryActions]:
    rules = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        pattern = "*" if kind < 0.1 else _repository(rng) + ("/*" if kind < 0.55 else "")
        actions = rng.sample([a.value for a in Action], rng.randint(1, 3))
        rules.append(RepositoryActions(pattern, tuple(actions)))
    return rules


def test_seeded_sweep_agrees_with_the_token_endpoint(services: Services, clock: FakeClock) -> None:
    rng = random.Random(11)
    tokens: list[tuple[str, str]] = []
    for i in range(8):
        name = f"sweep-{i}"
        services.scope_maps.create(f"sweep-map-{i}", _rules(rng), actor=ME)
        made = services.tokens.create(
            name, scope_map=f"sweep-map-{i}", expiry=clock.now + timedelta(days=1), actor=ME
        )
        if i % 4 == 1:
            services.tokens.update(name, status="disabled", actor=ME)
        tokens.append((name, made.passwords[0].value or ""))
    repositories = sorted({_repository(rng) for _ in range(40)})
    compared = allowed = 0
    for moment in ("now", "after the passwords expired"):
        for name, password in tokens:
            principal = services.registry_auth.authenticate(name, password)
            for repository in repositories:
                endpoint = principal.allowed(repository) if principal else frozenset()
                for action in Action:
                    view = services.access.explain(
                        token=name, repository=repository, action=action.value
                    )
                    assert view.allowed == (action in endpoint), (moment, name, repository)
                    if principal is not None:
                        assert set(view.granted) == endpoint
                    compared += 1
                    allowed += view.allowed
        clock.advance(days=2)
    assert compared == 2 * len(tokens) * len(repositories) * len(Action)
    assert 0 < allowed < compared // 2  # both answers were exercised
