"""Properties of the whole grant path, scope string to ``access`` claim, against an oracle.

The oracle below is written from the reference's rules alone (shared/reference, "wildcard
rules"), without the code's regular expressions, indexes or ``startswith``:

- a rule is ``*`` (every repository), ``prefix/*`` (every repository whose path components
  begin with all of prefix's components and go on at least one further; never the prefix
  itself) or an exact name; one ``*`` at most, only at the end after ``/``;
- matching rules add up; rules are matched without regard to case (README);
- the registry's ``pull``/``push``/``delete``/``metadata_read``/``metadata_write`` are the
  scope map's ``content/read``/``content/write``/``content/delete``/``metadata/read``/
  ``metadata/write``; ``*`` needs all five; nothing else is ever granted, the catalog above all.

Checked: the parser never raises anything but its own ``ValidationError``; what it accepts has
the shape ``TYPE:NAME:ACTIONS`` as the oracle splits it; the claim grants exactly what the
oracle allows of what was asked, so never more (no over-grant) and never less.

Example counts follow the Hypothesis profile (tests/conftest.py): ``HYPOTHESIS_PROFILE=nightly``
runs 10,000 examples per property.
"""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from fleet.domain.actions import Action
from fleet.domain.errors import ValidationError
from fleet.domain.evaluation import compile_entries
from fleet.domain.patterns import parse_pattern
from fleet.registry_auth.grants import access_claim
from fleet.registry_auth.scopes import Scope, parse_scope, parse_scopes

# -- the oracle ------------------------------------------------------------------------------
LOWER_ALNUM = set(string.ascii_lowercase + string.digits)
SEPARATORS = set("._-")
ACTION_CHARS = set(string.ascii_lowercase + "_")
MAX_NAME = 255
REGISTRY_ACTIONS = {
    "pull": "content/read",
    "push": "content/write",
    "delete": "content/delete",
    "metadata_read": "metadata/read",
    "metadata_write": "metadata/write",
}
EVERY_ACTION = set(REGISTRY_ACTIONS.values())


def oracle_component(text: str) -> bool:
    """Lowercase letters and digits, with single '.', '_' or '-' between them."""
    if not text or text[0] not in LOWER_ALNUM or text[-1] not in LOWER_ALNUM:
        return False
    previous_was_separator = False
    for char in text:
        if char in SEPARATORS:
            if previous_was_separator:
                return False
            previous_was_separator = True
        elif char in LOWER_ALNUM:
            previous_was_separator = False
        else:
            return False
    return True


def oracle_name(text: str) -> bool:
    return len(text) <= MAX_NAME and all(oracle_component(c) for c in text.split("/"))


def oracle_rule_ok(pattern: str) -> bool:
    """Whether a scope map may hold this rule (capitals are kept, so they are allowed)."""
    if pattern == "*":
        return True
    lowered = pattern.lower() if pattern.isascii() else pattern
    if lowered.endswith("/*"):
        lowered = lowered[:-2]
    return "*" not in lowered and oracle_name(lowered)


def oracle_matches(pattern: str, repository: str) -> bool:
    if not oracle_name(repository):
        return False
    if pattern == "*":
        return True
    asked = repository.split("/")
    if pattern.endswith("/*"):
        prefix = pattern[:-2].lower().split("/")
        return len(asked) > len(prefix) and asked[: len(prefix)] == prefix
    return pattern.lower().split("/") == asked


def oracle_allowed(rules: list[tuple[str, str]], repository: str) -> set[str]:
    """The scope-map actions the rules give on ``repository``."""
    return {action for pattern, action in rules if oracle_matches(pattern, repository)}


def oracle_grants(allowed: set[str], registry_action: str) -> bool:
    if registry_action == "*":
        return allowed >= EVERY_ACTION
    return REGISTRY_ACTIONS.get(registry_action) in allowed


def oracle_action(text: str) -> bool:
    """A registry action word: a lowercase letter, then lowercase letters and '_'."""
    return bool(text) and text[0] in string.ascii_lowercase and set(text) <= ACTION_CHARS


def oracle_split(text: str) -> tuple[str, str, list[str]] | None:
    """TYPE before the first ':', ACTIONS after the last one, NAME in between."""
    first = text.find(":")
    last = text.rfind(":")
    if first == -1 or first == last:
        return None
    return text[:first], text[first + 1 : last], text[last + 1 :].split(",")


# -- generated maps and requests -----------------------------------------------------------
# Few distinct letters, so generated rules and requests meet often.
letters = st.sampled_from("abAB0")
components = st.builds(
    lambda head, sep, tail: head + sep + tail if tail else head,
    st.text(letters, min_size=1, max_size=3),
    st.sampled_from(["", "-", ".", "_"]),
    st.text(letters, max_size=2),
)
paths = st.lists(components, min_size=1, max_size=4).map("/".join)
patterns = st.one_of(paths, paths.map(lambda p: p + "/*"), st.just("*"))
scope_actions = st.sampled_from([a.value for a in Action])
rules = st.lists(st.tuples(patterns, scope_actions), max_size=12)
registry_actions = st.sampled_from(
    [*REGISTRY_ACTIONS, "*", "catalog", "pul", "Pull", "", "_pull", "pull_", "**"]
)
repositories = st.one_of(
    paths.map(str.lower),  # what registry clients send
    paths,  # capitals, which the parser refuses
    st.sampled_from(["a//b", "a/", "/a", "a/*", "-a", "a--b", "a" * 256]),
)
resource_types = st.sampled_from(["repository", "repository(plugin)", "registry", "Repository"])
scopes = st.builds(
    lambda kind, name, actions: f"{kind}:{name}:{','.join(actions)}",
    resource_types,
    repositories,
    st.lists(registry_actions, min_size=1, max_size=4),
)
# Requests a registry client could send: well formed, so the claim tests reach the claim.
well_formed_scopes = st.builds(
    lambda kind, name, actions: f"{kind}:{name}:{','.join(actions)}",
    st.sampled_from(["repository", "repository", "repository(plugin)", "registry"]),
    paths.map(str.lower),
    st.lists(st.sampled_from([*REGISTRY_ACTIONS, "*", "catalog", "pull_"]), min_size=1, max_size=4),
)
scope_parameters = st.lists(
    st.one_of(
        well_formed_scopes,
        st.lists(well_formed_scopes, min_size=2, max_size=3).map(" ".join),
        scopes,
    ),
    max_size=5,
)


def _valid_rules(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(p, a) for p, a in raw if oracle_rule_ok(p)]


# -- the parser ----------------------------------------------------------------------------
@given(st.one_of(st.text(max_size=300), scopes))
def test_the_scope_parser_raises_only_its_own_error(text: str) -> None:
    try:
        parsed = parse_scope(text)
    except ValidationError as error:
        assert error.code == "InvalidScope"
        return
    split = oracle_split(text)
    assert split is not None, text
    kind, name, actions = split
    assert parsed.name == name
    assert kind in (parsed.type, f"{parsed.type}({parsed.resource_class})")
    assert list(parsed.actions) == list(dict.fromkeys(actions))
    if parsed.type == "repository":
        assert oracle_name(name), name


@given(scopes)
def test_a_repository_scope_is_accepted_exactly_when_the_oracle_says_it_is_well_formed(
    text: str,
) -> None:
    kind, name, actions = oracle_split(text) or ("", "", [])
    well_formed = (
        kind in ("repository", "repository(plugin)", "registry")
        and (kind == "registry" or oracle_name(name))
        and bool(name)
        and all(a == "*" or oracle_action(a) for a in actions)
    )
    try:
        parse_scope(text)
    except ValidationError:
        assert not well_formed, text
    else:
        assert well_formed, text


# -- rules and the claim -------------------------------------------------------------------
@given(patterns)
def test_a_rule_is_accepted_exactly_when_the_reference_allows_it(pattern: str) -> None:
    try:
        parse_pattern(pattern)
    except ValidationError:
        assert not oracle_rule_ok(pattern), pattern
    else:
        assert oracle_rule_ok(pattern), pattern


@given(rules, repositories)
def test_a_scope_map_gives_exactly_what_the_oracle_allows(
    raw: list[tuple[str, str]], repository: str
) -> None:
    valid = _valid_rules(raw)
    compiled = compile_entries((p, Action(a)) for p, a in valid)
    lowered = repository.lower() if repository.isascii() else repository
    assert {a.value for a in compiled.evaluate(repository)} == oracle_allowed(valid, lowered)


@given(rules, scope_parameters)
def test_the_claim_grants_exactly_what_was_asked_and_allowed(
    raw: list[tuple[str, str]], parameters: list[str]
) -> None:
    valid = _valid_rules(raw)
    compiled = compile_entries((p, Action(a)) for p, a in valid)
    try:
        parsed = parse_scopes(parameters)
    except ValidationError:
        return  # a malformed scope is a 400 for the whole request: nothing is granted
    claim = access_claim(parsed, compiled.evaluate)

    asked: dict[str, list[str]] = {}
    for item in (item for value in parameters for item in value.split()):
        kind, name, actions = oracle_split(item) or ("", "", [])
        if kind.split("(")[0] == "repository":
            asked.setdefault(name, []).extend(actions)
    expected = {
        name: [a for a in dict.fromkeys(actions) if oracle_grants(oracle_allowed(valid, name), a)]
        for name, actions in asked.items()
    }
    expected = {name: actions for name, actions in expected.items() if actions}

    got = {}
    for entry in claim:
        assert entry["type"] == "repository"  # never the catalog, never another type
        got[entry["name"]] = entry["actions"]
    assert got == expected
    for name, actions in got.items():  # spelled out: the subset of what was asked and allowed
        assert set(actions) <= set(asked[name])
        assert all(oracle_grants(oracle_allowed(valid, name), a) for a in actions)


@given(rules, st.lists(well_formed_scopes, max_size=4))
def test_a_wider_scope_map_never_grants_less(raw: list[tuple[str, str]], asked: list[str]) -> None:
    """Adding rules only adds: every grant of a map is also a grant of the map plus more."""
    valid = _valid_rules(raw)
    try:
        parsed = parse_scopes(asked)
    except ValidationError:
        return
    half = compile_entries((p, Action(a)) for p, a in valid[: len(valid) // 2])
    whole = compile_entries((p, Action(a)) for p, a in valid)
    narrow = {e["name"]: set(e["actions"]) for e in access_claim(parsed, half.evaluate)}
    wide = {e["name"]: set(e["actions"]) for e in access_claim(parsed, whole.evaluate)}
    assert all(actions <= wide.get(name, set()) for name, actions in narrow.items())


def test_the_oracle_itself_on_the_reference_example() -> None:
    """The oracle is code too: pinned on the reference's own additive example."""
    ref = [
        ("sample/*", "content/read"),
        ("sample/teamA/*", "content/write"),
        ("sample/teamA/projectB", "content/delete"),
    ]
    assert oracle_allowed(ref, "sample/teama/projectb") == {
        "content/read",
        "content/write",
        "content/delete",
    }
    assert oracle_allowed(ref, "sample/teama/projectc") == {"content/read", "content/write"}
    assert oracle_allowed(ref, "sample/teama") == {"content/read"}
    assert oracle_allowed(ref, "sample") == set()
    assert oracle_allowed(ref, "sample-other/x") == set()
    assert oracle_split("repository:host:5000/a:pull,push") == (
        "repository",
        "host:5000/a",
        ["pull", "push"],
    )
    assert not oracle_rule_ok("sample/*/teamA")
    assert not oracle_rule_ok("sample/teamA*")
    assert not oracle_rule_ok("sample/teamA/*/projectB/*")
    assert Scope("repository", "a", ("pull",)) == parse_scope("repository:a:pull")
