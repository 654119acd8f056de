import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.domain.actions import ALL_ACTIONS, Action
from fleet.domain.evaluation import Rule, compile_rules, evaluate
from fleet.domain.patterns import parse_pattern

R, W, D = Action.CONTENT_READ, Action.CONTENT_WRITE, Action.CONTENT_DELETE


def rule(pattern: str, *actions: Action) -> Rule:
    return Rule(parse_pattern(pattern), frozenset(actions))


# The reference's additive example.
REFERENCE = [rule("sample/*", R), rule("sample/teama/*", W), rule("sample/teama/projectb", D)]


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("sample/teama/projectb", {R, W, D}),
        ("sample/teama/projectc", {R, W}),
        ("sample/teamb/x", {R}),
        ("sample/teama/projectb/deeper", {R, W}),
        ("sample", set()),  # prefix/* never matches the prefix itself
        ("sample-other/x", set()),  # nor a sibling that shares its characters
        ("samplex/teama/projectb", set()),
        ("other", set()),
        ("sample/team a/projectb", set()),  # not a valid name: nothing
    ],
)
def test_reference_additive_example(repository: str, expected: set[Action]) -> None:
    assert evaluate(REFERENCE, repository) == expected


# The same example with the reference's own capitals: registry clients ask for lowercase names.
REFERENCE_AS_WRITTEN = [
    rule("sample/*", R),
    rule("sample/teamA/*", W),
    rule("sample/teamA/projectB", D),
]


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("sample/teama/projectb", {R, W, D}),
        ("sample/teama/projectc", {R, W}),
        ("sample/teamb/x", {R}),
        ("sample/teama", {R}),
        ("Sample/teamA/projectB", {R, W, D}),  # matched without regard to case, both ways
    ],
)
def test_reference_rules_as_written_match_without_regard_to_case(
    repository: str, expected: set[Action]
) -> None:
    assert evaluate(REFERENCE_AS_WRITTEN, repository) == expected


def test_root_wildcard_applies_everywhere_including_new_repositories() -> None:
    compiled = compile_rules([rule("*", R, W)])
    for repo in ["a", "samples/hello-world", "sample/teamc/teamcimage"]:
        assert compiled.evaluate(repo) == {R, W}


def test_exact_rule_matches_only_itself() -> None:
    compiled = compile_rules([rule("samples/hello-world", R)])
    assert compiled.evaluate("samples/hello-world") == {R}
    assert compiled.evaluate("samples/hello-world/x") == set()
    assert compiled.evaluate("samples") == set()


# -- properties ----------------------------------------------------------------------------
components = st.from_regex(r"[a-z0-9]{1,3}", fullmatch=True)
repositories = st.lists(components, min_size=1, max_size=5).map("/".join)
patterns = st.one_of(
    repositories,
    repositories.map(lambda r: r + "/*"),
    st.just("*"),
)
rules = st.lists(
    st.tuples(patterns, st.frozensets(st.sampled_from(sorted(ALL_ACTIONS)), min_size=1)),
    max_size=12,
)


def _matches(pattern: str, repository: str) -> bool:
    """An independent, naive statement of the matching rule."""
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1])  # "prefix/" + at least one more char
    return repository == pattern


@given(rules, repositories)
def test_evaluation_equals_union_of_matching_rules(raw: list, repository: str) -> None:
    built = [rule(p, *acts) for p, acts in raw]
    expected: set[Action] = set()
    for p, acts in raw:
        if _matches(p, repository):
            expected |= acts
    assert evaluate(built, repository) == expected


@given(rules, repositories)
def test_never_grants_an_action_no_matching_rule_holds(raw: list, repository: str) -> None:
    granted = evaluate([rule(p, *a) for p, a in raw], repository)
    held = set().union(*[a for p, a in raw if _matches(p, repository)]) if raw else set()
    assert granted <= held


@given(repositories, components)
def test_no_match_across_a_slash_boundary(prefix: str, extra: str) -> None:
    compiled = compile_rules([rule(prefix + "/*", R)])
    assert compiled.evaluate(prefix) == set()
    assert compiled.evaluate(prefix + extra) == set()  # "samples" + "x": not below samples/
    assert compiled.evaluate(prefix + "/" + extra) == {R}


def test_evaluation_work_does_not_grow_with_rule_count() -> None:
    """Counted, not timed: the index is consulted once per path component."""
    many = compile_rules(
        [rule(f"team{i}/app{i}", R) for i in range(500)]
        + [rule(f"team{i}/*", W) for i in range(500)]
    )
    calls = 0

    class CountingDict(dict):
        def get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return super().get(*args, **kwargs)

    object.__setattr__(many, "prefixes", CountingDict(many.prefixes))
    object.__setattr__(many, "exact", CountingDict(many.exact))
    assert many.evaluate("team7/app7") == {R, W}
    assert calls == 2  # one exact look-up + one prefix look-up for a depth-2 name
    calls = 0
    many.evaluate("a/b/c/d/e")
    assert calls == 1 + 4
