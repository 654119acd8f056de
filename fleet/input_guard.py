"""No text from outside may hold U+0000: PostgreSQL's text cannot store it.

A name, search or value with one failed inside the query there (a 500, found by the nightly
schemathesis run on PostgreSQL), and SQLite kept it, so the two databases disagreed. Refused
once, before any view runs: in the path, the query string, a form and a JSON body.
"""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.datastructures import MultiDict

from fleet.domain.errors import ValidationError

NUL = "\x00"
# JSON nests at most this deep before the walk stops looking (the body is bounded already).
MAX_DEPTH = 64


def _holds_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return NUL in value
    if depth >= MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(_holds_nul(k, depth + 1) or _holds_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v, depth + 1) for v in value)
    return False


MESSAGE = "the request holds the NUL character (U+0000), which no name or value may contain"
# Views that bound their form more tightly before they read it check it themselves
# (form_holds_nul), so the hook must not read it first under the general limit.
FORM_READ_BY_VIEW = frozenset({"registry_token.token_post"})


def form_holds_nul(form: MultiDict[str, str]) -> bool:
    return any(NUL in k or NUL in v for k, v in form.items(multi=True))


def refuse_nul_characters() -> None:
    """A ``before_request`` hook, after the body's size is bounded."""
    if (
        NUL in request.path
        or form_holds_nul(request.args)
        or (request.endpoint not in FORM_READ_BY_VIEW and form_holds_nul(request.form))
        or (request.is_json and _holds_nul(request.get_json(silent=True)))
    ):
        raise ValidationError(MESSAGE, code="InvalidRequest")
