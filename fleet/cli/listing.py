"""List commands: page after page from the API, printed as the pages arrive, ``--top N``.

The rows of a list are never all held at once unless ``--query`` needs them: a JMESPath
query sees one document (``[?status=='enabled'] | length(@)`` must count every row), so with
``--query`` the command first collects every page (up to ``--top``), then prints the query's
answer. Without it, ``json`` prints one valid JSON array whose rows are written page by page,
``tsv`` a line per row, and ``table`` its header and the first page's rows with widths taken
from that page, later pages keeping those widths (a longer cell only widens its own line).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

from fleet.cli.client import ApiClient
from fleet.cli.output import Column, cell, emit, tsv_line

PAGE_SIZE = 1000  # the server's largest page: the fewest round trips
TOP_HELP = "Print at most N rows, then stop fetching pages."


def pages(
    client: ApiClient,
    path: str,
    params: dict[str, Any] | None = None,
    *,
    field: str = "value",
    top: int | None = None,
) -> Iterator[list[Any]]:
    """Each page's rows in turn, following ``nextCursor``; at most ``top`` rows in all."""
    left = top
    cursor: str | None = None
    while left is None or left > 0:
        size = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        query |= {"limit": size} | ({"cursor": cursor} if cursor else {})
        answer = client.call("GET", path, params=query)
        rows = list(answer[field])[:size]
        if left is not None:
            left -= len(rows)
        if rows:
            yield rows
        cursor = answer.get("nextCursor")
        if not cursor:
            return


def _json_chunks(pages_: Iterator[list[Any]]) -> Iterator[str]:
    """The text of ``json.dumps(all_rows, indent=2)``, one page at a time."""
    first = True
    for rows in pages_:
        text = ",\n".join(
            "\n".join("  " + line for line in json.dumps(row, indent=2).splitlines())
            for row in rows
        )
        yield ("[\n" if first else ",\n") + text
        first = False
    yield "[]\n" if first else "\n]\n"


def _table_chunks(pages_: Iterator[list[Any]], columns: Sequence[Column]) -> Iterator[str]:
    header = [c.header for c in columns]
    widths: list[int] | None = None
    for rows in pages_:
        cells = [[cell(c.value(row)) for c in columns] for row in rows]
        if widths is None:
            widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(columns))]
            cells = [header, *cells]
        lines = [
            "  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip()
            for r in cells
        ]
        if cells and cells[0] is header:
            lines.insert(1, "  ".join("-" * w for w in widths))
        yield "\n".join(lines) + "\n"
    if widths is None:  # no rows: the header alone, as the unpaged table printed it
        yield "\n".join(["  ".join(header), "  ".join("-" * len(h) for h in header)]) + "\n"


def stream(
    pages_: Iterator[list[Any]],
    output: str,
    query: str | None,
    columns: Sequence[Column] | None,
) -> None:
    if query:
        emit([row for rows in pages_ for row in rows], output, query, columns)
        return
    if output == "json":
        chunks = _json_chunks(pages_)
    elif output == "tsv":
        chunks = ("".join(tsv_line(row) + "\n" for row in rows) for rows in pages_)
    elif columns is not None:
        chunks = _table_chunks(pages_, columns)
    else:  # a table without declared columns takes them from the rows: it needs them all
        emit([row for rows in pages_ for row in rows], output, None, None)
        return
    for chunk in chunks:
        click.echo(chunk, nl=False)  # one write (and flush) per page


top_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--top", type=click.IntRange(1), metavar="N", help=TOP_HELP
)
