"""A table read in keyset pages both ways (Previous and Next), as the Tokens and Scope maps
lists are: the cursors come from the URL, the service reads one page on its index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import render_template, request

from fleet.services.paging import Page
from fleet.web.session import services


def keyset_list(template: str, read: Callable[..., Page[Any]], limit: int) -> str:
    """Render ``template`` with the page ``read(limit=, cursor=, before=)`` answers for the
    request's cursors; ``first`` says whether it is the list's first page."""
    args = request.args
    page = read(limit=limit, cursor=args.get("cursor") or None, before=args.get("before") or None)
    first = page.prev_cursor is None and not args.get("cursor")
    return render_template(template, page=page, first=first, now=services().ctx.clock())
