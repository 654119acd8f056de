"""Tokens and their two password slots, with the reference's semantics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete as sql_delete
from sqlalchemy import func
from sqlmodel import Session, col, select

from fleet.credentials import PASSWORD_PREFIX, generate_secret
from fleet.db.devices import Device
from fleet.db.models import DISABLED, ENABLED, SLOTS, ScopeMap, Token, TokenPassword
from fleet.domain.errors import ConflictError, LimitExceededError, NotFoundError, ValidationError
from fleet.domain.names import validate_resource_name
from fleet.domain.rules import RepositoryActions, to_entries
from fleet.domain.times import check_future
from fleet.services.context import ServiceContext, audit
from fleet.services.paging import DEFAULT_LIMIT, Cursors, Page, check_limit
from fleet.services.revocation import AccessEnd, access_end, ends_detail, revoke
from fleet.services.scope_maps import ScopeMapService, check_description, get_map
from fleet.services.views import PasswordView, TokenView

SCOPE_MAP_SUFFIX = "-scope-map"
TOKENS = "tokens"  # the cursor's list


class _Unset:
    """Marks an argument that was not given (``None`` means "clear it")."""


UNSET = _Unset()
STATUSES = (ENABLED, DISABLED)


def validate_status(status: str) -> str:
    if status not in STATUSES:
        raise ValidationError(
            f"invalid status {status!r}: expected 'enabled' or 'disabled'", code="InvalidStatus"
        )
    return status


def validate_slots(slots: Iterable[str]) -> list[str]:
    chosen = sorted(set(slots))
    bad = [s for s in chosen if s not in SLOTS]
    if bad or not chosen:
        raise ValidationError(
            "choose password1, password2 or both" + (f" (not {', '.join(bad)})" if bad else ""),
            code="InvalidPasswordName",
        )
    return chosen


def get_token(session: Session, name: str) -> Token:
    row = session.exec(select(Token).where(Token.name == name)).first()
    if row is None:
        raise NotFoundError(f"token {name!r} does not exist", code="TokenNotFound")
    return row


def passwords_of(session: Session, token_ids: Sequence[int]) -> dict[int, list[PasswordView]]:
    """The stored passwords of these tokens (never their values), in one query."""
    found: dict[int, list[PasswordView]] = {}
    if not token_ids:
        return found
    rows = session.exec(
        select(
            TokenPassword.token_id,
            TokenPassword.slot,
            TokenPassword.created_at,
            TokenPassword.expiry,
        )  # columns, not ORM rows: a page's worth of objects is most of a list's time
        .where(col(TokenPassword.token_id).in_(token_ids))
        .order_by(col(TokenPassword.token_id), col(TokenPassword.slot))
    ).all()
    for token_id, slot, created_at, expiry in rows:
        found.setdefault(token_id, []).append(
            PasswordView(name=slot, created_at=created_at, expiry=expiry)
        )
    return found


def _make_view(
    token: Token,
    scope_map: str | None,
    passwords: Sequence[PasswordView],
    now: datetime | None = None,
) -> TokenView:
    return TokenView(
        name=token.name,
        status=token.status,
        disable_at=token.disable_at,
        scope_map=scope_map,
        created_at=token.created_at,
        passwords=tuple(passwords),
        access=access_end(token.access_ends_at, now) if now is not None else None,
    )


def _view(
    session: Session, token: Token, fresh: Sequence[PasswordView] = (), *, now: datetime
) -> TokenView:
    scope_map = None
    if token.scope_map_id is not None:
        scope_map = session.get(ScopeMap, token.scope_map_id)
    by_slot = {p.name: p for p in fresh}
    assert token.id is not None
    stored = passwords_of(session, [token.id]).get(token.id, [])
    passwords = [by_slot.get(p.name) or p for p in stored]
    return _make_view(token, scope_map.name if scope_map else None, passwords, now)


# A device holds only the passwords the server sealed to it: one made or removed here would
# lock it out (its live slot replaced) or be a copy the device never had. The messages name no
# command-line flag (REST and dashboard users read them too): the CLI adds its own advice from
# the code (fleet/cli/hints.py).
DEVICE_PASSWORDS = (
    "its passwords are made and sealed to the device by the server: rotate the device for a "
    "new one (POST /api/v1/devices/{owner}/rotate), disable it to end access "
    "(POST /api/v1/devices/{owner}/disable)"
)


def _refuse_for_device(session: Session, token: Token, why: str) -> None:
    owner = session.exec(select(Device.device_id).where(Device.token_id == token.id)).first()
    if owner is not None:
        raise ConflictError(
            f"token {token.name!r} belongs to device {owner!r}: {why.format(owner=owner)}",
            code="DeviceToken",
        )


def _refuse_for_device_status(session: Session, token: Token, status: str) -> None:
    """A device's token is enabled and disabled with its device (broker login, wipe, new
    password), never alone: disabled alone, an honest agent loops reject and reissue."""
    owner = session.exec(select(Device.device_id).where(Device.token_id == token.id)).first()
    if owner is not None:
        verb = "enable" if status == ENABLED else "disable"
        raise ConflictError(
            f"token {token.name!r} belongs to device {owner!r} and follows it: {verb} the "
            f"device (POST /api/v1/devices/{owner}/{verb})",
            code="DeviceToken",
        )


class TokenService:
    def __init__(self, ctx: ServiceContext, scope_maps: ScopeMapService) -> None:
        self.ctx = ctx
        self.scope_maps = scope_maps
        self.cursors = Cursors(ctx.hasher)

    def _check_expiry(self, expiry: datetime | None) -> None:
        if expiry is not None:
            check_future(
                expiry, self.ctx.clock(), f"the expiry {expiry.isoformat()}", code="InvalidExpiry"
            )

    # -- reads ----------------------------------------------------------------------------
    def show(self, name: str) -> TokenView:
        with self.ctx.db.session() as s:
            return _view(s, get_token(s, name), now=self.ctx.clock())

    def list(
        self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None, before: str | None = None
    ) -> Page[TokenView]:
        """One page of tokens by name, after ``cursor`` or (backwards) just before ``before``:
        two queries, whatever the page size."""
        check_limit(limit)
        if cursor is not None and before is not None:
            raise ValidationError("give cursor or before, not both", code="InvalidCursor")
        with self.ctx.db.session() as s:
            query = (
                select(
                    Token.id,
                    Token.name,
                    Token.status,
                    Token.disable_at,
                    Token.created_at,
                    ScopeMap.name,
                )
                .join(ScopeMap, col(ScopeMap.id) == col(Token.scope_map_id), isouter=True)
                .limit(limit + 1)
            )
            if before is not None:
                (until,) = self.cursors.decode(TOKENS, before, (str,))
                query = query.where(col(Token.name) < until).order_by(col(Token.name).desc())
            else:
                query = query.order_by(col(Token.name))
            if cursor is not None:
                (after,) = self.cursors.decode(TOKENS, cursor, (str,))
                query = query.where(col(Token.name) > after)
            rows = s.exec(query).all()
            passwords = passwords_of(s, [r[0] for r in rows[:limit]])
            views = [
                TokenView(
                    name=name,
                    status=status,
                    disable_at=disable_at,
                    scope_map=map_name,
                    created_at=created_at,
                    passwords=tuple(passwords.get(token_id, ())),
                )
                for token_id, name, status, disable_at, created_at, map_name in rows[:limit]
            ]
            keys = [(r[1],) for r in rows]
            if before is not None:
                return self.cursors.page_before(TOKENS, views, keys, limit)
            return self.cursors.page_after(TOKENS, views, keys, limit, first=cursor is None)

    def device_of(self, name: str) -> str | None:
        """The id of the device that owns token ``name``, or None for an operator's token."""
        with self.ctx.db.session() as s:
            token = get_token(s, name)
            found: str | None = s.exec(
                select(Device.device_id).where(Device.token_id == token.id)
            ).first()
            return found

    # -- writes ---------------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        scope_map: str | None = None,
        repositories: Sequence[RepositoryActions] = (),
        status: str = ENABLED,
        generate_passwords: bool = True,
        expiry: datetime | None = None,
        new_map_name: str | None = None,
        new_map_description: str | None = None,
        actor: str,
    ) -> TokenView:
        """A token on ``scope_map``, or on a map made in the same transaction from
        ``repositories`` (named ``new_map_name``, by default ``<token>-scope-map``)."""
        validate_resource_name(name, "token")
        validate_status(status)
        self._check_expiry(expiry)
        if bool(scope_map) == bool(repositories):
            raise ValidationError(
                "give either a scope map or one or more repository rules, not both or neither",
                code="InvalidRequest",
            )
        entries = to_entries(repositories) if repositories else []
        map_name = new_map_name or name + SCOPE_MAP_SUFFIX
        if repositories and new_map_name:
            validate_resource_name(new_map_name, "scope map")
        check_description(new_map_description)
        with self.ctx.db.session() as s:
            if s.exec(select(Token.id).where(Token.name == name)).first() is not None:
                raise ConflictError(f"token {name!r} already exists", code="TokenExists")
            count = s.exec(select(func.count()).select_from(Token)).one()
            if count >= self.ctx.settings.max_tokens:
                raise LimitExceededError(
                    f"the registry already holds {count} tokens, the limit "
                    f"({self.ctx.settings.max_tokens})"
                )
            if scope_map:
                map_id = get_map(s, scope_map).id
            else:
                description = new_map_description or f"Created with token {name}"
                self.scope_maps.create_in(s, map_name, entries, description, actor=actor)
                map_id = get_map(s, map_name).id
            now = self.ctx.clock()
            token = Token(
                name=name, status=status, scope_map_id=map_id, created_at=now, updated_at=now
            )
            s.add(token)
            s.flush()
            fresh = self.generate_in(s, token, SLOTS, expiry) if generate_passwords else []
            audit(
                s,
                self.ctx,
                actor,
                "token.create",
                name,
                status=status,
                passwords=[p.name for p in fresh],
            )
            s.flush()
            return _view(s, token, fresh, now=now)

    def update(
        self,
        name: str,
        *,
        scope_map: str | None = None,
        status: str | None = None,
        disable_at: datetime | _Unset | None = UNSET,
        actor: str,
    ) -> TokenView:
        """Change the scope map or status, or plan (``None``: cancel) a disable."""
        if status is not None:
            validate_status(status)
        with self.ctx.db.session() as s:
            token = get_token(s, name)
            changes: dict[str, object] = {}
            if scope_map is not None:
                _refuse_for_device(s, token, "its scope map comes from the device's group")
                token.scope_map_id = get_map(s, scope_map).id
                changes["scope_map"] = scope_map
            if status is not None and status != token.status:
                _refuse_for_device_status(s, token, status)
                if status == DISABLED:
                    changes.update(ends_detail(revoke(s, self.ctx, token)))
                else:
                    token.access_ends_at = None  # its passwords work again
                token.status = status
                changes["status"] = status
            if not isinstance(disable_at, _Unset):
                _refuse_for_device_status(s, token, DISABLED)
                if disable_at is not None:
                    check_future(
                        disable_at,
                        self.ctx.clock(),
                        f"the disable time {disable_at.isoformat()}",
                        code="InvalidDisableTime",
                    )
                token.disable_at = disable_at
                changes["disable_at"] = disable_at
            token.updated_at = self.ctx.clock()
            s.add(token)
            audit(s, self.ctx, actor, "token.update", name, **changes)
            s.flush()
            return _view(s, token, now=self.ctx.clock())

    def delete(self, name: str, *, actor: str) -> AccessEnd | None:
        """Delete the token; when JWTs issued before stop working (unknown for a token
        disabled before such times were kept)."""
        with self.ctx.db.session() as s:
            token = get_token(s, name)
            _refuse_for_device(s, token, "delete the device instead")
            ends_by = revoke(s, self.ctx, token)
            s.exec(sql_delete(TokenPassword).where(col(TokenPassword.token_id) == token.id))
            s.delete(token)
            audit(s, self.ctx, actor, "token.delete", name, **ends_detail(ends_by))
            return access_end(ends_by, self.ctx.clock())

    def generate_credentials(
        self, name: str, slots: Iterable[str], *, expiry: datetime | None = None, actor: str
    ) -> tuple[str, list[PasswordView]]:
        """New values for the chosen slots, each shown in this answer only."""
        chosen = validate_slots(slots)
        self._check_expiry(expiry)
        with self.ctx.db.session() as s:
            token = get_token(s, name)
            _refuse_for_device(s, token, DEVICE_PASSWORDS)
            replaced = s.exec(
                select(TokenPassword.id).where(
                    TokenPassword.token_id == token.id, col(TokenPassword.slot).in_(chosen)
                )
            ).first()
            # A password replaced is a password removed: JWTs issued with it stay valid.
            ends_by = revoke(s, self.ctx, token) if replaced is not None else None
            fresh = self.generate_in(s, token, chosen, expiry)
            audit(
                s,
                self.ctx,
                actor,
                "token.credential.generate",
                name,
                passwords=chosen,
                expiry=expiry,
                **ends_detail(ends_by),
            )
            return token.name, fresh

    def delete_credential(self, name: str, slot: str, *, actor: str) -> TokenView:
        (slot,) = validate_slots([slot])
        with self.ctx.db.session() as s:
            token = get_token(s, name)
            _refuse_for_device(s, token, DEVICE_PASSWORDS)
            row = s.exec(
                select(TokenPassword).where(
                    TokenPassword.token_id == token.id, TokenPassword.slot == slot
                )
            ).first()
            if row is None:
                raise NotFoundError(f"token {name!r} has no {slot}", code="PasswordNotFound")
            ends_by = revoke(s, self.ctx, token)
            s.delete(row)
            token.updated_at = self.ctx.clock()
            s.add(token)
            audit(
                s,
                self.ctx,
                actor,
                "token.credential.delete",
                name,
                password=slot,
                **ends_detail(ends_by),
            )
            s.flush()
            return _view(s, token, now=self.ctx.clock())

    def generate_in(
        self, s: Session, token: Token, slots: Iterable[str], expiry: datetime | None
    ) -> list[PasswordView]:
        """New values for ``slots`` inside the caller's transaction, each returned once."""
        now = self.ctx.clock()
        fresh: list[PasswordView] = []
        for slot in slots:
            value = generate_secret(PASSWORD_PREFIX)
            row = s.exec(
                select(TokenPassword).where(
                    TokenPassword.token_id == token.id, TokenPassword.slot == slot
                )
            ).first()
            if row is None:
                row = TokenPassword(token_id=token.id, slot=slot, secret_hash="")
            row.secret_hash = self.ctx.hasher.hash(value)
            row.created_at = now
            row.expiry = expiry
            s.add(row)
            fresh.append(PasswordView(name=slot, created_at=now, expiry=expiry, value=value))
        token.updated_at = now
        s.add(token)
        return fresh
