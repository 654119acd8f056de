"""The access explainer: its decision is the token endpoint's, and the rules it shows are
exactly the matching ones (an independent naive statement of matching checks both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.domain.actions import Action
from fleet.domain.evaluation import compile_entries
from fleet.domain.explain import Reason, TokenState, explain, password_is_live
from fleet.registry_auth.grants import ACTION_FOR_REGISTRY_ACTION, access_claim
from fleet.registry_auth.scopes import Scope

R, W, D = Action.CONTENT_READ, Action.CONTENT_WRITE, Action.CONTENT_DELETE
MR, MW = Action.METADATA_READ, Action.METADATA_WRITE
NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIVE = TokenState.of(True, [("password1", None)], NOW)

# The reference's additive example.
REFERENCE = compile_entries([("sample/*", R), ("sample/teama/*", W), ("sample/teama/projectb", D)])


def _shown(explanation) -> list[tuple[str, list[str], bool]]:  # type: ignore[no-untyped-def]
    return [(m.pattern, m.actions, m.grants) for m in explanation.matched]


def test_the_reference_example_shows_every_matching_rule_and_which_grants() -> None:
    found = explain(REFERENCE, "sample/teama/projectb", D, LIVE)
    assert found.allowed
    assert _shown(found) == [
        ("sample/*", ["content/read"], False),
        ("sample/teama/*", ["content/write"], False),
        ("sample/teama/projectb", ["content/delete"], True),
    ]
    assert found.granted == {R, W, D}
    other = explain(REFERENCE, "sample/teama/projectc", D, LIVE)
    assert not other.allowed
    assert other.denied_because == (Reason.ACTION_NOT_GRANTED,)
    assert _shown(other) == [
        ("sample/*", ["content/read"], False),
        ("sample/teama/*", ["content/write"], False),
    ]


@pytest.mark.parametrize(
    ("repository", "reason"),
    [
        ("other/x", Reason.NO_RULE_MATCHED),
        ("sample", Reason.NO_RULE_MATCHED),  # prefix/* never matches the prefix itself
        ("sample//teama", Reason.INVALID_REPOSITORY),
        ("sample/*", Reason.INVALID_REPOSITORY),  # a pattern is not a repository
    ],
)
def test_a_denial_says_why(repository: str, reason: Reason) -> None:
    found = explain(REFERENCE, repository, R, LIVE)
    assert found.denied_because == (reason,)
    assert found.matched == ()


def test_a_disabled_token_is_denied_even_where_its_rules_grant() -> None:
    disabled = TokenState.of(False, [("password1", None), ("password2", None)], NOW)
    found = explain(REFERENCE, "sample/x", R, disabled)
    assert not found.allowed
    assert found.denied_because == (Reason.TOKEN_DISABLED,)
    assert _shown(found) == [("sample/*", ["content/read"], True)]  # still shown
    assert not any(p.live for p in disabled.passwords)


def test_a_token_without_a_live_password_is_denied() -> None:
    expired = TokenState.of(True, [("password1", NOW - timedelta(seconds=1))], NOW)
    assert explain(REFERENCE, "sample/x", R, expired).denied_because == (Reason.NO_LIVE_PASSWORD,)
    none = TokenState.of(True, [], NOW)
    assert explain(REFERENCE, "other", R, none).denied_because == (
        Reason.NO_LIVE_PASSWORD,
        Reason.NO_RULE_MATCHED,
    )
    one_left = TokenState.of(
        True, [("password2", NOW + timedelta(days=1)), ("password1", NOW)], NOW
    )
    assert [(p.name, p.live) for p in one_left.passwords] == [
        ("password1", False),  # expiring this very instant counts as expired
        ("password2", True),
    ]
    assert explain(REFERENCE, "sample/x", R, one_left).allowed


def test_a_token_without_a_scope_map_is_denied() -> None:
    found = explain(None, "sample/x", R, LIVE)
    assert found.denied_because == (Reason.NO_SCOPE_MAP,)
    assert found.granted == frozenset()


def test_a_scope_map_alone_ignores_token_state() -> None:
    assert explain(REFERENCE, "sample/x", R).allowed


def test_rules_of_one_pattern_are_shown_as_one_row() -> None:
    compiled = compile_entries([("samples/*", R), ("samples/*", MR), ("*", MW)])
    assert _shown(explain(compiled, "samples/a", MR)) == [
        ("*", ["metadata/write"], False),
        ("samples/*", ["content/read", "metadata/read"], True),
    ]


def test_password_is_live() -> None:
    assert password_is_live(True, None, NOW)
    assert password_is_live(True, NOW + timedelta(microseconds=1), NOW)
    assert not password_is_live(True, NOW, NOW)
    assert not password_is_live(False, None, NOW)


# -- the explainer never disagrees with the token endpoint --------------------------------
components = st.sampled_from(["a", "b", "ab", "a-b", "x1", "Ab"])
repositories = st.lists(components, min_size=1, max_size=4).map("/".join)
patterns = st.one_of(repositories, repositories.map(lambda r: r + "/*"), st.just("*"))
entries = st.lists(st.tuples(patterns, st.sampled_from(list(Action))), max_size=15)
asked = st.one_of(repositories, st.sampled_from(["A", "a//b", "a/", "/a", "*", "a/*"]))
REGISTRY_ACTION = {a: r for r, a in ACTION_FOR_REGISTRY_ACTION.items()}


def _matches(pattern: str, repository: str) -> bool:
    """An independent, naive statement of the reference's matching (without regard to case)."""
    pattern, repository = pattern.lower(), repository.lower()
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1])
    return repository == pattern


def _valid(repository: str) -> bool:
    return all(part and part.replace("-", "").isalnum() for part in repository.split("/")) and (
        repository.isascii()
    )


@settings(max_examples=400)
@given(entries, asked, st.sampled_from(list(Action)), st.booleans())
def test_explainer_agrees_with_the_token_endpoint(
    raw: list[tuple[str, Action]], repository: str, action: Action, enabled: bool
) -> None:
    compiled = compile_entries(raw)
    token = TokenState.of(enabled, [("password1", None)], NOW)
    found = explain(compiled, repository, action, token)

    # What the token endpoint grants: the access claim over the endpoint's own policy.
    claim = access_claim(
        [Scope("repository", repository, (REGISTRY_ACTION[action],))], compiled.evaluate
    )
    endpoint_allows = enabled and bool(claim)
    assert found.allowed == endpoint_allows
    assert found.granted == compiled.evaluate(repository)

    # The rules shown are exactly those that match, by an independent statement of matching.
    expected = {p.lower() for p, _ in raw if _valid(repository) and _matches(p, repository)}
    assert {m.pattern.lower() for m in found.matched} == expected
    for m in found.matched:
        held = {a for p, a in raw if p.lower() == m.pattern.lower()}
        assert set(m.rule.actions) == held
        assert m.grants == (action in held)
    union = set().union(*[set(m.rule.actions) for m in found.matched])
    assert union == found.granted
    assert any(m.grants for m in found.matched) == (action in found.granted)
