"""Operator accounts for the dashboard: a name, a role and an argon2id password hash.

Operator passwords are chosen or read by people, so unlike generated secrets (keyed HMAC) they
get a slow hash. Verifying one costs about a tenth of a second of the machine, which is why
sign-in failures are limited per name and per address *before* the hash is checked, and why a
name that does not exist is checked against a dummy hash: both answers take the same time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from fleet.credentials import OPERATOR_PASSWORD_PREFIX, generate_secret
from fleet.db.models import Operator
from fleet.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    TooManyRequestsError,
)
from fleet.domain.operators import (
    ADMIN,
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    checked_name,
    checked_password,
    checked_role,
)
from fleet.domain.throttle import FailureLimiter
from fleet.services.context import ServiceContext, audit

SIGN_IN_FAILURE_BURST = 5  # failed sign-ins allowed at once per name and per address
SIGN_IN_REFILL_PER_S = 1 / 30  # then one more every 30 s
FAILED_SIGN_IN = "wrong name or password"


@dataclass(frozen=True, slots=True)
class OperatorView:
    id: int
    name: str
    role: str
    session_epoch: int
    created_at: datetime
    password_changed_at: datetime
    last_sign_in_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def _view(row: Operator) -> OperatorView:
    if row.id is None:
        raise ValueError("an operator row without an id")
    return OperatorView(
        id=row.id,
        name=row.name,
        role=row.role,
        session_epoch=row.session_epoch,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
        last_sign_in_at=row.last_sign_in_at,
    )


class OperatorService:
    def __init__(self, ctx: ServiceContext, hasher: PasswordHasher | None = None) -> None:
        self.ctx = ctx
        self._hasher = hasher or PasswordHasher()  # argon2id with the library's defaults
        self._failures = FailureLimiter(
            time.monotonic, burst=SIGN_IN_FAILURE_BURST, refill_per_s=SIGN_IN_REFILL_PER_S
        )

    @cached_property
    def _dummy_hash(self) -> str:
        """Checked when a name is unknown, so that answer takes as long as a wrong password."""
        return self._hasher.hash(generate_secret(OPERATOR_PASSWORD_PREFIX))

    def create(
        self, name: str, role: str, password: str | None = None, *, actor: str
    ) -> tuple[OperatorView, str | None]:
        """A new operator. With no password one is generated and returned, the only time."""
        name, role = checked_name(name), checked_role(role)
        generated = None if password is not None else generate_secret(OPERATOR_PASSWORD_PREFIX)
        chosen = checked_password(password if password is not None else str(generated))
        now = self.ctx.clock()
        with self.ctx.db.session() as s:
            if s.exec(select(Operator.id).where(Operator.name == name)).first() is not None:
                raise ConflictError(
                    f"an operator named {name!r} exists already", code="OperatorExists"
                )
            row = Operator(
                name=name,
                role=role,
                password_hash=self._hasher.hash(chosen),
                created_at=now,
                password_changed_at=now,
            )
            s.add(row)
            s.flush()
            audit(s, self.ctx, actor, "operator.create", name, role=role)
            return _view(row), generated

    def list(self) -> list[OperatorView]:
        with self.ctx.db.session() as s:
            rows = s.exec(select(Operator).order_by(col(Operator.name))).all()
            return [_view(r) for r in rows]

    def get(self, name: str) -> OperatorView:
        with self.ctx.db.session() as s:
            return _view(self._row(s, name))

    def delete(self, name: str, *, actor: str) -> None:
        with self.ctx.db.session() as s:
            row = self._row(s, name)
            s.delete(row)
            audit(s, self.ctx, actor, "operator.delete", row.name)

    def reset_password(self, name: str, password: str | None = None, *, actor: str) -> str | None:
        """A new password (generated and returned when none is given); every session ends."""
        generated = None if password is not None else generate_secret(OPERATOR_PASSWORD_PREFIX)
        chosen = checked_password(password if password is not None else str(generated))
        with self.ctx.db.session() as s:
            row = self._row(s, name)
            row.password_hash = self._hasher.hash(chosen)
            row.session_epoch += 1
            row.password_changed_at = self.ctx.clock()
            s.add(row)
            audit(s, self.ctx, actor, "operator.reset-password", row.name)
        return generated

    def authenticate(self, name: str, password: str, *, address: str) -> OperatorView:
        """The operator, for a right name and password; else an error that says no more.

        Failures are limited per name and per address; once either is over its limit the
        password is not even checked until the limit has refilled.
        """
        name = name.strip()[:MAX_NAME_CHARS]
        keys = (f"name:{name.lower()}", f"addr:{address}")
        wait = max(self._failures.retry_after(key) for key in keys)
        if wait > 0:
            raise TooManyRequestsError(
                f"too many failed sign-ins; try again in {int(wait) + 1} s",
                retry_after=int(wait) + 1,
            )
        password = password[:MAX_PASSWORD_CHARS]
        with self.ctx.db.session() as s:
            row = s.exec(select(Operator).where(Operator.name == name)).first()
            stored = row.password_hash if row is not None else None
            if self._verify(stored, password) and row is not None:
                if self._hasher.check_needs_rehash(row.password_hash):
                    row.password_hash = self._hasher.hash(password)
                row.last_sign_in_at = self.ctx.clock()
                s.add(row)
                actor = f"operator:{row.name}"
                audit(s, self.ctx, actor, "operator.sign-in", row.name, address=address)
                return _view(row)
            # A failure is recorded and committed: nothing is raised inside the transaction.
            audit(s, self.ctx, f"operator:{name}", "operator.sign-in-failed", name, address=address)
        for key in keys:
            self._failures.record_failure(key)
        raise AuthenticationError(FAILED_SIGN_IN, code="SignInFailed")

    def _verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches; an unknown name (``None``) costs the same time."""
        try:
            self._hasher.verify(stored or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def signed_in(self, operator_id: int, session_epoch: int) -> OperatorView | None:
        """The operator a session belongs to, while it exists and its password is unchanged."""
        with self.ctx.db.session() as s:
            row = s.get(Operator, operator_id)
            if row is None or row.session_epoch != session_epoch:
                return None
            return _view(row)

    def _row(self, s: Session, name: str) -> Operator:
        row = s.exec(select(Operator).where(Operator.name == name.strip())).first()
        if row is None:
            raise NotFoundError(f"no operator is named {name[:80]!r}", code="OperatorNotFound")
        return row
