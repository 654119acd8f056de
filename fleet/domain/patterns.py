"""Repository patterns of scope-map rules, validated once when a map is saved.

A pattern is an exact repository name, ``prefix/*`` (one ``*``, last, after a ``/``; it
matches every repository below ``prefix`` at any depth, never ``prefix`` itself) or ``*``
alone (every repository).

Rules are kept as the operator wrote them, capitals included (the reference's own example is
``sample/teamA/*``), and matched without regard to case: registry clients always ask for
lowercase repository names, so ``sample/teamA/*`` covers ``sample/teama/projectb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.domain.errors import ValidationError
from fleet.domain.names import is_valid_rule_repository

WILDCARD = "*"
_PREFIX_SUFFIX = "/*"


class PatternKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    ROOT = "root"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: PatternKind
    # The repository name for EXACT, the prefix (without "/*") for PREFIX, "" for ROOT, as
    # written; ``key`` is what requests are matched against.
    value: str

    @property
    def key(self) -> str:
        return self.value.lower()

    def __str__(self) -> str:
        if self.kind is PatternKind.ROOT:
            return WILDCARD
        if self.kind is PatternKind.PREFIX:
            return self.value + _PREFIX_SUFFIX
        return self.value


def _invalid(text: str, why: str) -> ValidationError:
    return ValidationError(f"invalid repository rule {text!r}: {why}", code="InvalidRule")


def parse_pattern(text: str) -> Pattern:
    """Parse one rule's repository; the error names the rule and says what is wrong."""
    if text == WILDCARD:
        return Pattern(PatternKind.ROOT, "")
    stars = text.count(WILDCARD)
    if stars > 1:
        raise _invalid(text, "a rule may hold a single wildcard '*'")
    if stars == 1:
        if not text.endswith(_PREFIX_SUFFIX):
            raise _invalid(text, "a wildcard must end the rule as '/*' (for example 'samples/*')")
        prefix = text[: -len(_PREFIX_SUFFIX)]
        if not is_valid_rule_repository(prefix):
            raise _invalid(text, f"{prefix!r} before '/*' is not a valid repository path")
        return Pattern(PatternKind.PREFIX, prefix)
    if not is_valid_rule_repository(text):
        raise _invalid(
            text,
            "not a valid repository name (components of letters and digits "
            "separated by '.', '_' or '-', joined by '/', at most 255 characters)",
        )
    return Pattern(PatternKind.EXACT, text)
