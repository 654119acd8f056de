"""``limit`` and ``cursor`` on every list, and the ``nextCursor`` every list answers with.

A list answers ``{"value": [...], "nextCursor": "..."}`` (``"tokens"`` instead of ``"value"``
for a scope map's tokens): the first page is what the unpaged list used to return, so an old
client that reads ``value`` still works on lists shorter than a page. ``nextCursor`` is null
on the last page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import request
from pydantic import Field

from fleet.services.paging import Page, parse_limit

T = TypeVar("T")

NEXT_CURSOR: Any = Field(
    default=None,
    description="Pass as `cursor` to get the next page; null on the last page",
)


def page_args() -> dict[str, Any]:
    """The page size and cursor of this request, checked (bad ones raise a 400)."""
    cursor = request.args.get("cursor")
    return {"limit": parse_limit(request.args.get("limit")), "cursor": cursor or None}


def page_json(page: Page[T], to_json: Callable[[T], Any], field: str = "value") -> dict[str, Any]:
    return {field: [to_json(item) for item in page.items], "nextCursor": page.next_cursor}
