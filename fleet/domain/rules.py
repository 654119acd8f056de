"""Rules as operators write them: ``--repository REPO ACTION...``, validated as a whole."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleet.domain.actions import Action, parse_action
from fleet.domain.errors import ValidationError
from fleet.domain.patterns import parse_pattern


@dataclass(frozen=True, slots=True)
class RepositoryActions:
    """One ``--repository`` argument: a pattern and the actions it lists."""

    repository: str
    actions: tuple[str, ...]


def to_entries(rules: Iterable[RepositoryActions]) -> list[tuple[str, Action]]:
    """Validate every rule and flatten it into ``(pattern, action)`` entries.

    The first invalid rule raises; the caller has changed nothing yet.
    """
    entries: dict[tuple[str, Action], None] = {}
    for rule in rules:
        pattern = str(parse_pattern(rule.repository))
        if not rule.actions:
            raise ValidationError(
                f"repository rule {rule.repository!r} lists no actions", code="InvalidRule"
            )
        for text in rule.actions:
            try:
                action = parse_action(text)
            except ValidationError as exc:
                raise ValidationError(
                    f"repository rule {rule.repository!r}: {exc.message}", code="InvalidRule"
                ) from None
            entries[(pattern, action)] = None
    return list(entries)


def from_pairs(pairs: Sequence[Sequence[str]]) -> list[RepositoryActions]:
    """``[["samples/*", "content/read"], ...]``: the CLI's and the API's shape."""
    out: list[RepositoryActions] = []
    for pair in pairs:
        if not pair:
            raise ValidationError("an empty repository rule was given", code="InvalidRule")
        out.append(RepositoryActions(pair[0], tuple(pair[1:])))
    return out
