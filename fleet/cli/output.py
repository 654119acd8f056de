"""``--output json|table|tsv`` and ``--query JMESPATH``, as ``az`` prints them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
import jmespath
from jmespath.exceptions import JMESPathError

OUTPUT_FORMATS = ("json", "table", "tsv")
MAX_CELL = 60


@dataclass(frozen=True)
class Column:
    header: str
    path: str  # a JMESPath into one row
    transform: Callable[[Any], Any] | None = None

    def value(self, row: Any) -> Any:
        found = jmespath.search(self.path, row)
        return self.transform(found) if self.transform and found is not None else found


def apply_query(data: Any, query: str | None) -> Any:
    if not query:
        return data
    try:
        return jmespath.search(query, data)
    except JMESPathError as exc:
        raise click.UsageError(f"--query {query!r} is not valid JMESPath: {exc}") from None


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and "+00:00" in value:
        value = value.split(".")[0].split("+")[0] + "Z"  # 2020-01-20T09:44:24Z, as az shows
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _rows(data: Any) -> list[Any]:
    if isinstance(data, dict) and set(data) == {"value"} and isinstance(data["value"], list):
        return list(data["value"])
    return list(data) if isinstance(data, list) else [data]


def render_table(data: Any, columns: Sequence[Column] | None) -> str:
    rows = _rows(data)
    if columns is None:
        keys: list[str] = []
        for row in rows:
            if isinstance(row, dict):
                keys += [
                    k for k, v in row.items() if k not in keys and not isinstance(v, dict | list)
                ]
        columns = [Column(k.upper(), k) for k in keys] or [Column("RESULT", "@")]
    table = [[c.header for c in columns]]
    for row in rows:
        table.append([cell(c.value(row)) for c in columns])
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tsv_line(value: Any) -> str:
    if isinstance(value, dict):
        return "\t".join(_tsv_scalar(v) for v in value.values() if not isinstance(v, dict | list))
    if isinstance(value, list):
        return "\t".join(_tsv_scalar(v) for v in value if not isinstance(v, dict | list))
    return _tsv_scalar(value)


def _tsv_scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def render_tsv(data: Any) -> str:
    rows = data["value"] if isinstance(data, dict) and set(data) == {"value"} else data
    if isinstance(rows, list):
        return "\n".join(tsv_line(r) for r in rows)
    return tsv_line(rows)


def emit(
    data: Any, output: str, query: str | None, columns: Sequence[Column] | None = None
) -> None:
    if data is None:
        return
    shaped = apply_query(data, query)
    if output == "table":
        text = render_table(shaped, None if query else columns)
    elif output == "tsv":
        text = render_tsv(shaped)
    else:
        text = json.dumps(shaped, indent=2)
    click.echo(text)
