"""Keyset pagination: page sizes, opaque cursors, and the page a list hands to the edges.

A cursor is the urlsafe base64 of the last row's sort key (JSON), tagged with the list it
belongs to and a short keyed hash, so a cursor that was cut, edited or taken from another list
is refused with one clear error instead of silently starting somewhere else. Every server
holds the same secret key, so any server continues a walk another one started. A cursor
carries no secret and grants nothing: the tag only catches mistakes and tampering.

Lists read ``WHERE key > :after ORDER BY key LIMIT n + 1`` on an indexed key, never OFFSET:
the extra row says whether there is a next page, and the cost of a page does not grow with
its position. Rows inserted or deleted between pages never shift the rows not yet read.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from fleet.credentials import SecretHasher
from fleet.domain.errors import ValidationError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
TAG_CHARS = 16  # 64 bits of a keyed hash: enough to catch any edit
MAX_CURSOR_CHARS = 1024

Key = tuple[str | int, ...]
T = TypeVar("T")


class InvalidCursorError(ValidationError):
    code = "InvalidCursor"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None  # None: this is the last page
    # For lists that also page backwards (the dashboard's "Previous"): None on the first page.
    prev_cursor: str | None = None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"limit must be an integer from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}), "
            f"not {limit!r}",
            code="InvalidLimit",
        )
    return limit


def parse_limit(text: str | None) -> int:
    """A ``limit`` query parameter: absent means the default."""
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(
            f"limit must be an integer from 1 to {MAX_LIMIT}, not {text!r}", code="InvalidLimit"
        ) from None
    return check_limit(value)


class Cursors:
    """Encodes and checks cursors under the server's secret key."""

    def __init__(self, hasher: SecretHasher) -> None:
        self.hasher = hasher

    def _tag(self, kind: str, body: str) -> str:
        return self.hasher.hash(f"cursor:{kind}:{body}")[:TAG_CHARS]

    def encode(self, kind: str, key: Key) -> str:
        raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False).encode()
        body = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"{body}.{self._tag(kind, body)}"

    def decode(self, kind: str, cursor: str, shape: Sequence[type]) -> Key:
        """The sort key inside ``cursor``; ``shape`` gives the type of each of its parts."""
        bad = InvalidCursorError(
            "the cursor is not valid for this list: pass back, unchanged, the nextCursor of "
            "the previous page of the same list (or no cursor for the first page)"
        )
        if len(cursor) > MAX_CURSOR_CHARS:
            raise bad
        body, dot, tag = cursor.partition(".")
        if not dot or not hmac.compare_digest(tag.encode(), self._tag(kind, body).encode()):
            raise bad
        try:
            key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise bad from None
        if not isinstance(key, list) or len(key) != len(shape):
            raise bad
        if any(type(part) is not kind_ for part, kind_ in zip(key, shape, strict=True)):
            raise bad
        return tuple(key)

    def page(self, kind: str, items: Sequence[T], keys: Sequence[Key], limit: int) -> Page[T]:
        """A page from up to ``limit + 1`` rows read in order, ``keys`` their sort keys.

        The extra row only tells that a next page exists; ``items`` may leave it out.
        """
        if len(keys) > limit:
            return Page(tuple(items[:limit]), self.encode(kind, keys[limit - 1]))
        return Page(tuple(items), None)

    def page_after(
        self, kind: str, items: Sequence[T], keys: Sequence[Key], limit: int, *, first: bool
    ) -> Page[T]:
        """:meth:`page`, with a cursor back to the page before it unless it is the first."""
        found = self.page(kind, items, keys, limit)
        back = None if first or not keys else self.encode(kind, keys[0])
        return Page(found.items, found.next_cursor, back)

    def page_before(
        self, kind: str, items: Sequence[T], keys: Sequence[Key], limit: int
    ) -> Page[T]:
        """The page that ends just before a cursor, from up to ``limit + 1`` rows read in
        *descending* order (``keys`` their sort keys): the rows come back in ascending order,
        with a cursor forward to the page the walk came from and one back if there is more."""
        kept = list(items[:limit])[::-1]
        kept_keys = list(keys[:limit])[::-1]
        if not kept_keys:
            return Page((), None, None)
        back = self.encode(kind, kept_keys[0]) if len(keys) > limit else None
        return Page(tuple(kept), self.encode(kind, kept_keys[-1]), back)
