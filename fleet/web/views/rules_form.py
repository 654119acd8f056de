"""The table of repository permissions a scope map holds, as a form: one row per repository,
a checkbox per action, and "+Add" for one more row, as in the reference's portal.

It works without JavaScript: "+Add" posts the form and the page comes back with one more
empty row, nothing saved. Each row is validated on its own with the domain's rules, so an
invalid wildcard is shown next to the row that holds it, in the reference's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from werkzeug.datastructures import MultiDict

from fleet.domain.actions import Action
from fleet.domain.errors import ValidationError
from fleet.domain.rules import RepositoryActions, to_entries
from fleet.web.format import is_whole

ACTIONS = tuple(a.value for a in Action)
MAX_ROWS = 500  # a map holds at most 500 entries (the default limit), so at most 500 rows
MAX_REPOSITORY_CHARS = 300  # longer than any valid rule (255), short enough to echo back
ADD_ROW = "add_row"


@dataclass
class RuleRow:
    repository: str = ""
    actions: tuple[str, ...] = ()
    error: str | None = None

    @property
    def blank(self) -> bool:
        return not self.repository and not self.actions


@dataclass
class RulesForm:
    """The rows as posted (kept on error), with an error per row."""

    rows: list[RuleRow] = field(default_factory=list)

    @classmethod
    def blank(cls) -> RulesForm:
        return cls([RuleRow()])

    @classmethod
    def of(cls, entries: Iterable[tuple[str, str]]) -> RulesForm:
        """A map's entries, one row per repository pattern, and an empty row to add one."""
        by_repository: dict[str, list[str]] = {}
        for repository, action in entries:
            by_repository.setdefault(repository, []).append(action)
        rows = [RuleRow(r, tuple(a)) for r, a in by_repository.items()]
        return cls([*rows, RuleRow()])

    @classmethod
    def read(cls, form: MultiDict[str, str]) -> RulesForm:
        raw = form.get("rows", "")
        count = min(int(raw), MAX_ROWS) if is_whole(raw, 4) else 0
        rows = []
        for i in range(count):
            repository = form.get(f"repo-{i}", "").strip()[:MAX_REPOSITORY_CHARS]
            chosen = list(dict.fromkeys(form.getlist(f"act-{i}")))[: len(ACTIONS) + 1]
            rows.append(RuleRow(repository, tuple(a[:32] for a in chosen)))
        return cls(rows or [RuleRow()])

    def with_row_added(self) -> RulesForm:
        if len(self.rows) < MAX_ROWS:
            self.rows.append(RuleRow())
        return self

    @property
    def errors(self) -> bool:
        return any(r.error for r in self.rows)

    def rules(self, *, unchecked_removes: bool = False) -> list[RepositoryActions]:
        """The filled rows as rules; each invalid row gets its error (check ``errors``).

        A repository with no permission checked is an error, or, when editing a map
        (``unchecked_removes``), the way to remove it.
        """
        found = []
        for row in self.rows:
            row.error = None
            if row.blank:
                continue
            if not row.repository:
                row.error = "enter a repository for these permissions"
                continue
            rule = RepositoryActions(row.repository, row.actions)
            if not row.actions and unchecked_removes:
                continue
            if not row.actions:
                row.error = f"choose at least one permission for {row.repository!r}"
                continue
            try:
                to_entries([rule])
            except ValidationError as exc:
                row.error = exc.message
                continue
            found.append(rule)
        return found

    def entries(self, *, unchecked_removes: bool = False) -> set[tuple[str, str]]:
        """What the rows grant, as (pattern, action) pairs; call it once :attr:`errors` is
        False after :meth:`rules`."""
        rules = self.rules(unchecked_removes=unchecked_removes)
        return {(p, a.value) for p, a in to_entries(rules)}

    def fail(self, exc: ValidationError) -> bool:
        """Put a service error on the row it names; False when it names none."""
        for row in self.rows:
            if row.repository and repr(row.repository) in exc.message:
                row.error = exc.message
                return True
        return False


def as_rules(pairs: Sequence[tuple[str, str]]) -> list[RepositoryActions]:
    by_repository: dict[str, list[str]] = {}
    for repository, action in sorted(pairs):
        by_repository.setdefault(repository, []).append(action)
    return [RepositoryActions(r, tuple(a)) for r, a in by_repository.items()]
