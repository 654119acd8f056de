"""Device groups: a read-only scope map, password lifetimes, and enrollment secrets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from fleet.credentials import (
    ENROLLMENT_CODE_PREFIX,
    ENROLLMENT_SECRET_PREFIX,
    HINT_CHARS,
    generate_secret,
)
from fleet.db.devices import CODE, PENDING, SECRET, Device, DeviceGroup, EnrollmentSecret
from fleet.db.models import ScopeMap, ScopeMapEntry, Token
from fleet.domain.actions import READ_ONLY_ACTIONS, Action
from fleet.domain.errors import ConflictError, NotFoundError, ValidationError
from fleet.domain.names import validate_resource_name
from fleet.domain.times import check_future
from fleet.registry_auth.tokens import (
    DEFAULT_DEVICE_TOKEN_LIFETIME,
    MAX_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
)
from fleet.services.context import ServiceContext, audit
from fleet.services.paging import DEFAULT_LIMIT, Cursors, Page, check_limit
from fleet.services.revocation import changed_lifetime
from fleet.services.scope_maps import entries_of, get_map
from fleet.services.views import GroupSummary, GroupView, SecretView

MAX_LIFETIME_DAYS = 3650
MAX_INACTIVITY_DAYS = 3650
GROUPS, SECRETS = "groups", "group-secrets"  # the cursors' lists
MAX_EMBEDDED_SECRETS = 20  # a group's view carries its newest 20; the rest are paged
MAX_MAP_CHOICES = 200


def check_read_only(session: Session, scope_map: ScopeMap) -> None:
    """A device group's map may hold only content/read and metadata/read."""
    assert scope_map.id is not None
    extra = sorted({a for _, a in entries_of(session, scope_map.id)} - set(READ_ONLY_ACTIONS))
    if extra:
        raise ValidationError(
            f"scope map {scope_map.name!r} grants {', '.join(extra)}: a device group's map may "
            f"hold only {Action.CONTENT_READ} and {Action.METADATA_READ}",
            code="ScopeMapNotReadOnly",
        )


def get_group(session: Session, name: str) -> DeviceGroup:
    row = session.exec(select(DeviceGroup).where(DeviceGroup.name == name)).first()
    if row is None:
        raise NotFoundError(f"device group {name!r} does not exist", code="GroupNotFound")
    return row


def _settings(g: DeviceGroup, map_name: str | None) -> dict[str, Any]:
    """The fields of GroupSettings, which every view of a group starts with."""
    return {
        "name": g.name,
        "scope_map": map_name,
        "password_lifetime_days": g.password_lifetime_days,
        "rotation_window_days": g.rotation_window_days,
        "inactivity_limit_days": g.inactivity_limit_days,
        "require_approval": g.require_approval,
    }


def _views(
    session: Session,
    rows: Sequence[tuple[DeviceGroup, str | None]],
    *,
    with_secrets: bool = True,
) -> list[GroupView]:
    """Views of these groups (with their map's name) in two more queries, whatever their number."""
    ids = [g.id for g, _ in rows if g.id is not None]
    if not ids:
        return []
    counts = dict(
        session.exec(
            select(Device.group_id, func.count())
            .where(col(Device.group_id).in_(ids))
            .group_by(col(Device.group_id))
        ).all()
    )
    secrets: dict[int, list[SecretView]] = {}
    if with_secrets:
        # The newest few of each group, in one query: a group that issued a code per device
        # has 100,000 of them, paged by GroupService.secrets instead.
        newest = (
            func.row_number()
            .over(
                partition_by=col(EnrollmentSecret.group_id),
                order_by=col(EnrollmentSecret.id).desc(),
            )
            .label("newest")
        )
        ranked = (
            select(col(EnrollmentSecret.id).label("id"), newest)
            .where(col(EnrollmentSecret.group_id).in_(ids))
            .subquery()
        )
        query = (
            select(EnrollmentSecret)
            .join(ranked, col(EnrollmentSecret.id) == ranked.c.id)
            .where(ranked.c.newest <= MAX_EMBEDDED_SECRETS + 1)
            .order_by(col(EnrollmentSecret.group_id), col(EnrollmentSecret.id))
        )
        for row in session.exec(query).all():
            secrets.setdefault(row.group_id, []).append(_secret_view(row))
    return [
        GroupView(
            **_settings(g, map_name),
            created_at=g.created_at,
            devices=counts.get(g.id, 0),
            secrets=tuple(secrets.get(g.id, [])[-MAX_EMBEDDED_SECRETS:]),  # type: ignore[arg-type]
            secrets_truncated=len(secrets.get(g.id, [])) > MAX_EMBEDDED_SECRETS,  # type: ignore[arg-type]
            jwt_lifetime_seconds=g.jwt_lifetime_s,
        )
        for g, map_name in rows
    ]


def _view(session: Session, g: DeviceGroup, *, with_secrets: bool = True) -> GroupView:
    scope_map = session.get(ScopeMap, g.scope_map_id) if g.scope_map_id else None
    rows = [(g, scope_map.name if scope_map else None)]
    return _views(session, rows, with_secrets=with_secrets)[0]


def _secret_view(row: EnrollmentSecret, value: str | None = None) -> SecretView:
    assert row.id is not None
    return SecretView(
        id=row.id,
        kind=row.kind,
        hint=row.hint,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        used_at=row.used_at,
        used_by=row.used_by,
        value=value,
    )


def check_jwt_lifetime(seconds: int) -> int:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not MIN_TOKEN_LIFETIME <= seconds <= MAX_TOKEN_LIFETIME
    ):
        raise ValidationError(
            f"the registry JWT lifetime must be {MIN_TOKEN_LIFETIME} to {MAX_TOKEN_LIFETIME} "
            f"seconds (not {seconds})",
            code="InvalidJwtLifetime",
        )
    return seconds


def _check_durations(lifetime: int, window: int, inactivity: int | None) -> None:
    if not 1 <= lifetime <= MAX_LIFETIME_DAYS:
        raise ValidationError(
            f"the password lifetime must be 1 to {MAX_LIFETIME_DAYS} days",
            code="InvalidPasswordLifetime",
        )
    if not 1 <= window < lifetime:
        raise ValidationError(
            f"the rotation window must be at least 1 day and shorter than the password "
            f"lifetime ({lifetime} days)",
            code="InvalidRotationWindow",
        )
    if inactivity is not None and not 1 <= inactivity <= MAX_INACTIVITY_DAYS:
        raise ValidationError(
            f"the inactivity limit must be 1 to {MAX_INACTIVITY_DAYS} days (or none)",
            code="InvalidInactivityLimit",
        )


class GroupService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.cursors = Cursors(ctx.hasher)

    def create(
        self,
        name: str,
        *,
        scope_map: str,
        password_lifetime_days: int = 30,
        rotation_window_days: int = 7,
        inactivity_limit_days: int | None = None,
        require_approval: bool = False,
        jwt_lifetime_seconds: int = DEFAULT_DEVICE_TOKEN_LIFETIME,
        actor: str,
    ) -> GroupView:
        validate_resource_name(name, "device group")
        _check_durations(password_lifetime_days, rotation_window_days, inactivity_limit_days)
        check_jwt_lifetime(jwt_lifetime_seconds)
        with self.ctx.db.session() as s:
            if s.exec(select(DeviceGroup.id).where(DeviceGroup.name == name)).first():
                raise ConflictError(f"device group {name!r} already exists", code="GroupExists")
            mapped = get_map(s, scope_map)
            check_read_only(s, mapped)
            now = self.ctx.clock()
            row = DeviceGroup(
                name=name,
                scope_map_id=mapped.id,
                password_lifetime_days=password_lifetime_days,
                rotation_window_days=rotation_window_days,
                inactivity_limit_days=inactivity_limit_days,
                require_approval=require_approval,
                jwt_lifetime_s=jwt_lifetime_seconds,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            audit(s, self.ctx, actor, "group.create", name, scope_map=scope_map)
            return _view(s, row)

    def list(self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[GroupView]:
        """One page of groups by name: three queries per page (groups, device counts,
        enrollment secrets)."""
        check_limit(limit)
        with self.ctx.db.session() as s:
            query = (
                select(DeviceGroup, ScopeMap.name)
                .join(ScopeMap, col(ScopeMap.id) == col(DeviceGroup.scope_map_id), isouter=True)
                .order_by(col(DeviceGroup.name))
                .limit(limit + 1)
            )
            if cursor is not None:
                (after,) = self.cursors.decode(GROUPS, cursor, (str,))
                query = query.where(col(DeviceGroup.name) > after)
            rows = s.exec(query).all()
            keys = [(g.name,) for g, _ in rows]
            return self.cursors.page(GROUPS, _views(s, rows[:limit]), keys, limit)

    def show(self, name: str, *, with_secrets: bool = True) -> GroupView:
        """A group; its secrets too unless ``with_secrets`` is false (page them with
        :meth:`secrets` instead: a group may have issued a code per device)."""
        with self.ctx.db.session() as s:
            return _view(s, get_group(s, name), with_secrets=with_secrets)

    def secret(self, name: str, secret_id: int) -> SecretView:
        """One of a group's secrets or codes (never its value)."""
        with self.ctx.db.session() as s:
            group = get_group(s, name)
            row = s.get(EnrollmentSecret, secret_id)
            if row is None or row.group_id != group.id:
                raise NotFoundError(
                    f"group {name!r} has no enrollment secret or code {secret_id}",
                    code="SecretNotFound",
                )
            return _secret_view(row)

    def update(self, name: str, *, actor: str, **changes: Any) -> GroupView:
        allowed = {
            "scope_map",
            "password_lifetime_days",
            "rotation_window_days",
            "inactivity_limit_days",
            "require_approval",
            "jwt_lifetime_seconds",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValidationError(f"cannot change {', '.join(sorted(unknown))}")
        with self.ctx.db.session() as s:
            row = get_group(s, name)
            lifetime = changes.get("password_lifetime_days", row.password_lifetime_days)
            window = changes.get("rotation_window_days", row.rotation_window_days)
            inactivity = changes.get("inactivity_limit_days", row.inactivity_limit_days)
            _check_durations(lifetime, window, inactivity)
            if "scope_map" in changes:
                mapped = get_map(s, changes["scope_map"])
                check_read_only(s, mapped)
                row.scope_map_id = mapped.id
                self._move_device_tokens(s, row, mapped)
            row.password_lifetime_days = lifetime
            row.rotation_window_days = window
            row.inactivity_limit_days = inactivity
            if "require_approval" in changes:
                row.require_approval = bool(changes["require_approval"])
            if "jwt_lifetime_seconds" in changes:
                lifetime_s = check_jwt_lifetime(changes["jwt_lifetime_seconds"])
                changed_lifetime(row, lifetime_s, self.ctx.clock())
            row.updated_at = self.ctx.clock()
            s.add(row)
            audit(s, self.ctx, actor, "group.update", name, **changes)
            s.flush()
            return _view(s, row)

    def _move_device_tokens(self, s: Session, group: DeviceGroup, mapped: ScopeMap) -> None:
        token_ids = select(Device.token_id).where(Device.group_id == group.id)
        for token in s.exec(select(Token).where(col(Token.id).in_(token_ids))).all():
            token.scope_map_id = mapped.id
            token.updated_at = self.ctx.clock()
            s.add(token)

    def delete(self, name: str, *, actor: str) -> None:
        with self.ctx.db.session() as s:
            row = get_group(s, name)
            count = s.exec(
                select(func.count()).select_from(Device).where(Device.group_id == row.id)
            ).one()
            if count:
                raise ConflictError(
                    f"device group {name!r} still has {count} device(s): delete them first",
                    code="GroupNotEmpty",
                )
            s.delete(row)
            audit(s, self.ctx, actor, "group.delete", name)

    # -- enrollment secrets and codes -----------------------------------------------------
    def secrets(
        self, name: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[SecretView]:
        """One page of a group's secrets and codes (never their values), oldest first: two
        queries per page."""
        check_limit(limit)
        with self.ctx.db.session() as s:
            group = get_group(s, name)
            kind = f"{SECRETS}:{group.id}"  # a cursor of another group's list is refused
            query = select(EnrollmentSecret).where(EnrollmentSecret.group_id == group.id)
            if cursor is not None:
                (after,) = self.cursors.decode(kind, cursor, (int,))
                query = query.where(col(EnrollmentSecret.id) > after)
            rows = s.exec(query.order_by(col(EnrollmentSecret.id)).limit(limit + 1)).all()
            views = [_secret_view(r) for r in rows[:limit]]
            return self.cursors.page(kind, views, [(r.id,) for r in rows], limit)  # type: ignore[misc]

    def create_secret(
        self,
        name: str,
        *,
        one_time: bool = False,
        expires_at: datetime | None = None,
        actor: str,
    ) -> SecretView:
        """A new enrollment secret (reusable) or code (one device, once), shown only here."""
        if expires_at is not None:
            check_future(expires_at, self.ctx.clock(), "the expiry", code="InvalidExpiry")
        kind = CODE if one_time else SECRET
        value = generate_secret(ENROLLMENT_CODE_PREFIX if one_time else ENROLLMENT_SECRET_PREFIX)
        with self.ctx.db.session() as s:
            group = get_group(s, name)
            row = EnrollmentSecret(
                group_id=group.id,
                kind=kind,
                secret_hash=self.ctx.hasher.hash(value),
                hint=value[-HINT_CHARS:],
                created_at=self.ctx.clock(),
                expires_at=expires_at,
            )
            s.add(row)
            s.flush()
            audit(s, self.ctx, actor, f"group.{kind}.create", name, hint=row.hint)
            return _secret_view(row, value)

    def revoke_secret(self, name: str, secret_id: int, *, actor: str) -> SecretView:
        with self.ctx.db.session() as s:
            group = get_group(s, name)
            row = s.get(EnrollmentSecret, secret_id)
            if row is None or row.group_id != group.id:
                raise NotFoundError(
                    f"device group {name!r} has no enrollment secret {secret_id}",
                    code="SecretNotFound",
                )
            if row.revoked_at is None:
                row.revoked_at = self.ctx.clock()
                s.add(row)
                audit(s, self.ctx, actor, f"group.{row.kind}.revoke", name, hint=row.hint)
            return _secret_view(row)

    # -- the dashboard's reads -------------------------------------------------------------
    def summaries(self) -> list[GroupSummary]:
        """Every group with its map's name and its device counts, in two queries in all."""
        with self.ctx.db.session() as s:
            rows = s.exec(
                select(DeviceGroup, ScopeMap.name)
                .join(ScopeMap, col(ScopeMap.id) == col(DeviceGroup.scope_map_id), isouter=True)
                .order_by(col(DeviceGroup.name))
            ).all()
            counts: dict[int, dict[str, int]] = {}
            for group_id, status, count in s.exec(
                select(Device.group_id, Device.status, func.count()).group_by(
                    col(Device.group_id), col(Device.status)
                )
            ).all():
                counts.setdefault(group_id, {})[status] = count
            return [
                GroupSummary(
                    **_settings(g, map_name),
                    devices=sum(counts.get(g.id or 0, {}).values()),
                    pending=counts.get(g.id or 0, {}).get(PENDING, 0),
                    jwt_lifetime_seconds=g.jwt_lifetime_s,
                )
                for g, map_name in rows
            ]

    def read_only_maps(self, limit: int = MAX_MAP_CHOICES) -> list[str]:
        """Names of scope maps a group may use (no action beyond reading), user-defined first."""
        beyond_reading = select(ScopeMapEntry.id).where(
            col(ScopeMapEntry.scope_map_id) == col(ScopeMap.id),
            col(ScopeMapEntry.action).not_in(sorted(a.value for a in READ_ONLY_ACTIONS)),
        )
        with self.ctx.db.session() as s:
            return list(
                s.exec(
                    select(ScopeMap.name)
                    .where(~beyond_reading.exists())
                    .order_by(col(ScopeMap.type).desc(), col(ScopeMap.name))
                    .limit(limit)
                ).all()
            )
