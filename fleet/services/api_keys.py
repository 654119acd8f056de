"""Operators' API keys: generated once, kept as keyed hashes, looked up by that hash."""

from __future__ import annotations

from sqlmodel import col, select

from fleet.credentials import API_KEY_PREFIX, HINT_CHARS, generate_secret, looks_valid
from fleet.db.models import ApiKey
from fleet.domain.errors import NotFoundError, ValidationError
from fleet.services.context import ServiceContext, audit
from fleet.services.views import ApiKeyView

MAX_KEY_NAME = 64


def _view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        name=row.name, hint=row.hint, created_at=row.created_at, revoked_at=row.revoked_at
    )


class ApiKeyService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def create(self, name: str, *, actor: str) -> tuple[ApiKeyView, str]:
        name = name.strip()
        if not name or len(name) > MAX_KEY_NAME:
            raise ValidationError(f"an API key needs a name of 1 to {MAX_KEY_NAME} characters")
        value = generate_secret(API_KEY_PREFIX)
        row = ApiKey(
            name=name,
            key_hash=self.ctx.hasher.hash(value),
            hint=value[-HINT_CHARS:],
            created_at=self.ctx.clock(),
        )
        with self.ctx.db.session() as s:
            s.add(row)
            audit(s, self.ctx, actor, "api-key.create", name, hint=row.hint)
        return _view(row), value

    def authenticate(self, value: str) -> str | None:
        """The key's name when it is valid and not revoked, else ``None``."""
        if not looks_valid(value, API_KEY_PREFIX):
            return None
        digest = self.ctx.hasher.hash(value)
        with self.ctx.db.session() as s:
            row = s.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
            if row is None or row.revoked_at is not None:
                return None
            return row.name

    def list(self) -> list[ApiKeyView]:
        with self.ctx.db.session() as s:
            return [_view(r) for r in s.exec(select(ApiKey).order_by(col(ApiKey.id))).all()]

    def revoke(self, name: str, *, actor: str) -> int:
        with self.ctx.db.session() as s:
            rows = s.exec(
                select(ApiKey).where(ApiKey.name == name, col(ApiKey.revoked_at).is_(None))
            ).all()
            if not rows:
                raise NotFoundError(f"no active API key is named {name!r}", code="ApiKeyNotFound")
            for row in rows:
                row.revoked_at = self.ctx.clock()
                s.add(row)
            audit(s, self.ctx, actor, "api-key.revoke", name, count=len(rows))
            return len(rows)
