"""The five repository actions of a scope map, as the reference names them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from fleet.domain.errors import ValidationError


class Action(StrEnum):
    CONTENT_READ = "content/read"
    CONTENT_WRITE = "content/write"
    CONTENT_DELETE = "content/delete"
    METADATA_READ = "metadata/read"
    METADATA_WRITE = "metadata/write"


ALL_ACTIONS: frozenset[Action] = frozenset(Action)
READ_ONLY_ACTIONS: frozenset[Action] = frozenset({Action.CONTENT_READ, Action.METADATA_READ})


def parse_action(value: str) -> Action:
    """Turn ``content/read`` into :class:`Action`, or say which values are accepted."""
    try:
        return Action(value.strip().lower())
    except ValueError:
        accepted = ", ".join(a.value for a in Action)
        raise ValidationError(
            f"unknown action {value!r}: expected one of {accepted}", code="InvalidAction"
        ) from None


def parse_actions(values: Iterable[str]) -> frozenset[Action]:
    return frozenset(parse_action(v) for v in values)


def sort_actions(actions: Iterable[Action]) -> list[str]:
    """Actions in the reference's order, for stable output."""
    order = list(Action)
    return [a.value for a in sorted(set(actions), key=order.index)]
