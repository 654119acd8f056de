import pytest

from fleet.domain.errors import ValidationError
from fleet.domain.patterns import PatternKind, parse_pattern

VALID = [
    ("samples/hello-world", PatternKind.EXACT, "samples/hello-world"),
    ("hello", PatternKind.EXACT, "hello"),
    ("a.b_c-d/e", PatternKind.EXACT, "a.b_c-d/e"),
    ("samples/*", PatternKind.PREFIX, "samples"),
    ("sample/teama/*", PatternKind.PREFIX, "sample/teama"),
    ("*", PatternKind.ROOT, ""),
    # The reference's own rules, as written: kept as given, matched without regard to case.
    ("sample/teamA/*", PatternKind.PREFIX, "sample/teamA"),
    ("sample/teamA/projectB", PatternKind.EXACT, "sample/teamA/projectB"),
    ("Samples/Hello", PatternKind.EXACT, "Samples/Hello"),
]

INVALID = [
    # The reference's own examples of invalid wildcards.
    ("sample/*/teamA", "wildcard"),
    ("sample/teamA*", "wildcard"),
    ("sample/teamA/*/projectB/*", "single wildcard"),
    # Not OCI names.
    ("samples/hel lo", "not a valid repository name"),
    ("samples/héllo", "not a valid repository name"),
    ("samples//hello", "not a valid repository name"),
    ("/samples", "not a valid repository name"),
    ("samples/", "not a valid repository name"),
    ("samples/-x", "not a valid repository name"),
    ("", "not a valid repository name"),
    ("/*", "before '/*'"),
    ("**", "single wildcard"),
    ("a" * 256, "not a valid repository name"),
    (".*", "wildcard"),
]


@pytest.mark.parametrize(("text", "kind", "value"), VALID)
def test_valid_patterns(text: str, kind: PatternKind, value: str) -> None:
    pattern = parse_pattern(text)
    assert pattern.kind is kind
    assert pattern.value == value
    assert str(pattern) == text


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_invalid_patterns_name_the_rule(text: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_pattern(text)
    assert repr(text) in info.value.message
    assert why in info.value.message
    assert info.value.code == "InvalidRule"
