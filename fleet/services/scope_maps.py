"""Scope maps: create, update, show, list, delete; system-defined maps kept read-only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, tuple_
from sqlmodel import Session, col, select

from fleet.db.devices import DeviceGroup
from fleet.db.models import SYSTEM_DEFINED, USER_DEFINED, ScopeMap, ScopeMapEntry, Token
from fleet.domain.actions import READ_ONLY_ACTIONS, Action
from fleet.domain.errors import (
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ReadOnlyError,
    ValidationError,
)
from fleet.domain.names import validate_resource_name
from fleet.domain.rules import RepositoryActions, to_entries
from fleet.domain.system_maps import SYSTEM_SCOPE_MAP_NAMES, SYSTEM_SCOPE_MAPS
from fleet.services.context import ServiceContext, audit
from fleet.services.paging import DEFAULT_LIMIT, Cursors, Page, check_limit
from fleet.services.views import ScopeMapView

MAX_NAMED_GROUPS = 5  # a refusal names at most this many groups

MAX_DESCRIPTION = 1024
SCOPE_MAPS, SCOPE_MAP_TOKENS = "scope-maps", "scope-map-tokens"  # the cursors' lists


def check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"the description is longer than {MAX_DESCRIPTION} characters", code="InvalidRequest"
        )


def entries_of(session: Session, scope_map_id: int) -> list[tuple[str, str]]:
    rows = session.exec(
        select(ScopeMapEntry.repository, ScopeMapEntry.action).where(
            ScopeMapEntry.scope_map_id == scope_map_id
        )
    ).all()
    return _sorted_entries((r, a) for r, a in rows)


def _sorted_entries(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    order = {a.value: i for i, a in enumerate(Action)}
    return sorted(rows, key=lambda e: (e[0], order.get(e[1], 99)))


def entries_of_many(session: Session, ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """The entries of these maps, in one query."""
    found: dict[int, list[tuple[str, str]]] = {i: [] for i in ids}
    if ids:
        rows = session.exec(
            select(
                ScopeMapEntry.scope_map_id, ScopeMapEntry.repository, ScopeMapEntry.action
            ).where(col(ScopeMapEntry.scope_map_id).in_(ids))
        ).all()
        for map_id, repository, action in rows:
            found[map_id].append((repository, action))
    return {i: _sorted_entries(e) for i, e in found.items()}


def _make_view(row: ScopeMap, entries: Sequence[tuple[str, str]]) -> ScopeMapView:
    return ScopeMapView(
        name=row.name,
        type=row.type,
        description=row.description,
        created_at=row.created_at,
        entries=tuple(entries),
    )


def view_of(session: Session, row: ScopeMap) -> ScopeMapView:
    assert row.id is not None
    return _make_view(row, entries_of(session, row.id))


def get_map(session: Session, name: str) -> ScopeMap:
    row = session.exec(select(ScopeMap).where(ScopeMap.name == name)).first()
    if row is None:
        raise NotFoundError(f"scope map {name!r} does not exist", code="ScopeMapNotFound")
    return row


class ScopeMapService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.cursors = Cursors(ctx.hasher)

    # -- system-defined maps -------------------------------------------------------------
    def ensure_system_maps(self) -> None:
        """Create the system-defined maps where missing and restore their rules. Idempotent."""
        with self.ctx.db.session() as s:
            for spec in SYSTEM_SCOPE_MAPS:
                row = s.exec(select(ScopeMap).where(ScopeMap.name == spec.name)).first()
                if row is None:
                    row = ScopeMap(
                        name=spec.name, description=spec.description, type=SYSTEM_DEFINED
                    )
                    s.add(row)
                    s.flush()
                assert row.id is not None
                wanted = {(p, a.value) for p, a in spec.entries}
                if set(entries_of(s, row.id)) != wanted:
                    row.revision += 1
                    s.add(row)
                    s.exec(
                        sql_delete(ScopeMapEntry).where(col(ScopeMapEntry.scope_map_id) == row.id)
                    )
                    s.add_all(
                        ScopeMapEntry(scope_map_id=row.id, repository=p, action=a)
                        for p, a in sorted(wanted)
                    )

    # -- reads ----------------------------------------------------------------------------
    def show(self, name: str) -> ScopeMapView:
        with self.ctx.db.session() as s:
            return view_of(s, get_map(s, name))

    def list(
        self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None, before: str | None = None
    ) -> Page[ScopeMapView]:
        """One page of maps, system-defined first, then by name, after ``cursor`` or
        (backwards) just before ``before``: two queries per page."""
        check_limit(limit)
        if cursor is not None and before is not None:
            raise ValidationError("give cursor or before, not both", code="InvalidCursor")
        key = tuple_(col(ScopeMap.type), col(ScopeMap.name))
        with self.ctx.db.session() as s:
            query = select(ScopeMap)
            if before is not None:
                until = self.cursors.decode(SCOPE_MAPS, before, (str, str))
                query = query.where(key < tuple_(*until)).order_by(
                    col(ScopeMap.type).desc(), col(ScopeMap.name).desc()
                )
            else:
                query = query.order_by(col(ScopeMap.type), col(ScopeMap.name))
            if cursor is not None:
                after = self.cursors.decode(SCOPE_MAPS, cursor, (str, str))
                query = query.where(key > tuple_(*after))
            rows = s.exec(query.limit(limit + 1)).all()
            entries = entries_of_many(s, [r.id for r in rows[:limit] if r.id is not None])
            views = [_make_view(r, entries.get(r.id, [])) for r in rows[:limit]]  # type: ignore[arg-type]
            keys = [(r.type, r.name) for r in rows]
            if before is not None:
                return self.cursors.page_before(SCOPE_MAPS, views, keys, limit)
            return self.cursors.page_after(SCOPE_MAPS, views, keys, limit, first=cursor is None)

    def names(self, *, limit: int = DEFAULT_LIMIT) -> list[str]:
        """The first ``limit`` map names in the list's order, without their rules: one query
        (what a form offers to choose from; any other name may still be typed)."""
        check_limit(limit)
        with self.ctx.db.session() as s:
            query = select(ScopeMap.name).order_by(col(ScopeMap.type), col(ScopeMap.name))
            return list(s.exec(query.limit(limit)))

    # -- writes ---------------------------------------------------------------------------
    def create(
        self,
        name: str,
        rules: Sequence[RepositoryActions],
        description: str = "",
        *,
        actor: str,
    ) -> ScopeMapView:
        validate_resource_name(name, "scope map")
        check_description(description)
        entries = to_entries(rules)
        with self.ctx.db.session() as s:
            view = self.create_in(s, name, entries, description, actor=actor)
        return view

    def create_in(
        self,
        s: Session,
        name: str,
        entries: list[tuple[str, Action]],
        description: str,
        *,
        actor: str,
    ) -> ScopeMapView:
        """Create a map inside the caller's transaction (token create uses it too)."""
        limit = self.ctx.settings.max_scope_map_entries
        if len(entries) > limit:
            raise LimitExceededError(
                f"scope map {name!r} would hold {len(entries)} repository-action entries; "
                f"the limit is {limit}"
            )
        if s.exec(select(ScopeMap.id).where(ScopeMap.name == name)).first() is not None:
            raise ConflictError(f"scope map {name!r} already exists", code="ScopeMapExists")
        count = s.exec(
            select(func.count()).select_from(ScopeMap).where(ScopeMap.type == USER_DEFINED)
        ).one()
        if count >= self.ctx.settings.max_scope_maps:
            raise LimitExceededError(
                f"the registry already holds {count} scope maps, the limit "
                f"({self.ctx.settings.max_scope_maps})"
            )
        now = self.ctx.clock()
        row = ScopeMap(
            name=name, description=description, type=USER_DEFINED, created_at=now, updated_at=now
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        s.add_all(
            ScopeMapEntry(scope_map_id=row.id, repository=p, action=a.value) for p, a in entries
        )
        audit(
            s,
            self.ctx,
            actor,
            "scope-map.create",
            name,
            actions=[f"{p}:{a.value}" for p, a in entries],
        )
        s.flush()
        return view_of(s, row)

    def update(
        self,
        name: str,
        *,
        add: Sequence[RepositoryActions] = (),
        remove: Sequence[RepositoryActions] = (),
        description: str | None = None,
        actor: str,
    ) -> ScopeMapView:
        check_description(description)
        to_add = to_entries(add)
        to_remove = to_entries(remove)
        with self.ctx.db.session() as s:
            row = get_map(s, name)
            self._writable(row)
            assert row.id is not None
            current = set(entries_of(s, row.id))
            missing = [f"{p} {a.value}" for p, a in to_remove if (p, a.value) not in current]
            if missing:
                raise ValidationError(
                    f"scope map {name!r} has no entry {', '.join(missing)} to remove",
                    code="EntryNotFound",
                )
            removed = {(p, a.value) for p, a in to_remove}
            added = {(p, a.value) for p, a in to_add} - current
            self._keep_read_only_for_groups(s, row, {a for _, a in added - removed})
            total = len(current - removed) + len(added - removed)
            limit = self.ctx.settings.max_scope_map_entries
            if total > limit:
                raise LimitExceededError(
                    f"scope map {name!r} would hold {total} repository-action entries; "
                    f"the limit is {limit}"
                )
            if removed:
                s.exec(
                    sql_delete(ScopeMapEntry).where(
                        col(ScopeMapEntry.scope_map_id) == row.id,
                        tuple_(col(ScopeMapEntry.repository), col(ScopeMapEntry.action)).in_(
                            sorted(removed)
                        ),
                    )
                )
            s.add_all(
                ScopeMapEntry(scope_map_id=row.id, repository=p, action=a)
                for p, a in sorted(added - removed)
            )
            if description is not None:
                row.description = description
            if removed or added - removed:
                row.revision += 1
            row.updated_at = self.ctx.clock()
            s.add(row)
            audit(
                s,
                self.ctx,
                actor,
                "scope-map.update",
                name,
                added=sorted(f"{p}:{a}" for p, a in added - removed),
                removed=sorted(f"{p}:{a}" for p, a in removed),
            )
            s.flush()
            return view_of(s, row)

    def tokens_using(
        self, name: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[str]:
        """One page of the names of the tokens using a map: two queries per page."""
        check_limit(limit)
        with self.ctx.db.session() as s:
            row = get_map(s, name)
            # The cursor belongs to this map's list: one of another map's is refused.
            kind = f"{SCOPE_MAP_TOKENS}:{row.id}"
            query = select(Token.name).where(Token.scope_map_id == row.id)
            if cursor is not None:
                (after,) = self.cursors.decode(kind, cursor, (str,))
                query = query.where(col(Token.name) > after)
            names = list(s.exec(query.order_by(col(Token.name)).limit(limit + 1)))
            return self.cursors.page(kind, names, [(n,) for n in names], limit)

    def delete(self, name: str, *, actor: str) -> list[str]:
        """Delete a map; tokens that used it are left with no permissions. Returns them.

        A map that a device group uses is refused (``ScopeMapInUse``)."""
        with self.ctx.db.session() as s:
            row = get_map(s, name)
            self._writable(row)
            self._refuse_if_a_group_uses(s, row)
            affected = list(
                s.exec(select(Token.name).where(Token.scope_map_id == row.id).order_by(Token.name))
            )
            s.exec(sql_delete(ScopeMapEntry).where(col(ScopeMapEntry.scope_map_id) == row.id))
            for token in s.exec(select(Token).where(Token.scope_map_id == row.id)).all():
                token.scope_map_id = None
                token.updated_at = self.ctx.clock()
                s.add(token)
            s.delete(row)
            audit(s, self.ctx, actor, "scope-map.delete", name, tokens_left_without_access=affected)
        return affected

    @staticmethod
    def _refuse_if_a_group_uses(s: Session, row: ScopeMap) -> None:
        """A group's map is what every one of its devices pulls with: deleting it would cut a
        whole group off at once (and every device enrolled later), so the group moves first."""
        groups = list(
            s.exec(
                select(DeviceGroup.name)
                .where(DeviceGroup.scope_map_id == row.id)
                .order_by(DeviceGroup.name)
                .limit(MAX_NAMED_GROUPS + 1)
            )
        )
        if groups:
            named = ", ".join(repr(g) for g in groups[:MAX_NAMED_GROUPS])
            more = " and others" if len(groups) > MAX_NAMED_GROUPS else ""
            raise ConflictError(
                f"scope map {row.name!r} serves device group {named}{more}: give the group "
                "another scope map first",
                code="ScopeMapInUse",
            )

    @staticmethod
    def _keep_read_only_for_groups(s: Session, row: ScopeMap, adding: set[str]) -> None:
        extra = sorted(adding - {a.value for a in READ_ONLY_ACTIONS})
        if not extra:
            return
        group = s.exec(select(DeviceGroup.name).where(DeviceGroup.scope_map_id == row.id)).first()
        if group is not None:
            raise ValidationError(
                f"scope map {row.name!r} serves device group {group!r}, whose devices may only "
                f"read: it cannot grant {', '.join(extra)}",
                code="ScopeMapNotReadOnly",
            )

    @staticmethod
    def _writable(row: ScopeMap) -> None:
        if row.type == SYSTEM_DEFINED or row.name in SYSTEM_SCOPE_MAP_NAMES:
            raise ReadOnlyError(
                f"scope map {row.name!r} is system-defined and cannot be changed",
                code="ScopeMapReadOnly",
            )
