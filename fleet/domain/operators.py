"""Operator accounts' rules: roles, names and password bounds (pure; no I/O)."""

from __future__ import annotations

import re

from fleet.domain.errors import ValidationError

ADMIN = "admin"
VIEWER = "viewer"
ROLES = (ADMIN, VIEWER)
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 64
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def checked_name(name: str) -> str:
    name = name.strip()
    if not NAME_RULE.fullmatch(name):
        raise ValidationError(
            f"an operator name is 1 to {MAX_NAME_CHARS} letters, digits and . _ @ -, "
            f"starting with a letter or digit; got {name[:80]!r}",
            code="InvalidOperatorName",
        )
    return name


def checked_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(
            f"an operator's role is one of {', '.join(ROLES)}; got {role[:32]!r}",
            code="InvalidRole",
        )
    return role


def checked_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValidationError(
            f"an operator password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            code="InvalidPassword",
        )
    return password
