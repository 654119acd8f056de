"""What every operator command shares: az-style options and ``--repository REPO ACTION...``."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from fleet.cli.client import ApiClient
from fleet.cli.listing import pages, stream, top_option
from fleet.cli.output import OUTPUT_FORMATS, Column, emit

# Options that take a repository and then every following word up to the next option.
GREEDY_OPTIONS = ("--repository", "--add-repository", "--remove-repository")
_SEP = "\x1f"


def _gather(args: list[str]) -> list[str]:
    """Fold ``--repository samples/x content/read content/write`` into one option value."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if name in GREEDY_OPTIONS:
            words = [inline] if eq else []
            i += 1
            while i < len(args) and not (args[i].startswith("-") and len(args[i]) > 1):
                words.append(args[i])
                i += 1
            out += [name, _SEP.join(words)]
            continue
        out.append(arg)
        i += 1
    return out


COMMON_PARAMS = ("server", "output", "query", "registry")


class AzCommand(click.Command):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        own = [p for p in params if p.name not in COMMON_PARAMS]
        return own + [p for p in params if p.name in COMMON_PARAMS]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _gather(args))


def split_words(value: str) -> list[str]:
    """The words a greedy option gathered (``--repository samples/x content/read``)."""
    return [w for w in value.split(_SEP) if w]


def split_rules(values: tuple[str, ...], option: str) -> list[list[str]]:
    rules = []
    for value in values:
        words = split_words(value)
        if len(words) < 2:
            raise click.UsageError(
                f"{option} takes a repository and at least one action, for example "
                f"{option} samples/hello-world content/read"
            )
        rules.append(words)
    return rules


def rules_json(values: tuple[str, ...], option: str) -> list[dict[str, Any]]:
    return [{"repository": w[0], "actions": w[1:]} for w in split_rules(values, option)]


def parse_when(value: str | None) -> str | None:
    """``--expiration`` in ISO 8601; a time without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, for example 2027-01-31T00:00:00Z",
            param_hint="--expiration",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.isoformat()


def with_example(text: str, example: str) -> str:
    """Help text ending with an example, kept as written (``\\b`` stops click rewrapping)."""
    return f"{text}\n\n\b\nExample:\n{example}"


def access_end_line(data: Any, now: float) -> str | None:
    """ "registry access ends by TIME (in N s)", or "... ended" once TIME has passed."""
    ends_by = data.get("registryAccessEndsBy") if isinstance(data, dict) else None
    if not isinstance(ends_by, str):
        return None
    try:
        at = datetime.fromisoformat(ends_by).astimezone(UTC)
    except ValueError:
        return None
    shown = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    left = math.ceil(at.timestamp() - now)
    if left <= 0:
        return f"registry access ended (by {shown})"
    return (
        f"registry access ends by {shown} (in {left} s): JWTs issued before stay valid until then"
    )


class Invocation:
    """The parsed common options of one command, and the way to print its result."""

    def __init__(self, server: str | None, output: str, query: str | None) -> None:
        self.client = ApiClient(server)
        self.output = output
        self.query = query

    def show(self, data: Any, columns: list[Column] | None = None) -> None:
        emit(data, self.output, self.query, columns)

    def tell_access_end(self, data: Any, what: str) -> None:
        """Say on stderr when JWTs issued to ``what`` before stop working, if the answer
        tells (``registryAccessEndsBy``): the output itself stays as it is for scripts."""
        line = access_end_line(data, time.time())
        if line:
            click.echo(f"{what}: {line}", err=True)

    def show_list(
        self,
        path: str,
        columns: list[Column] | None = None,
        *,
        params: dict[str, Any] | None = None,
        field: str = "value",
        top: int | None = None,
    ) -> None:
        """Fetch a list page after page and print it as it comes (see ``listing``)."""
        rows = pages(self.client, path, params, field=field, top=top)
        stream(rows, self.output, self.query, columns)


QUERY_HELP = "JMESPath query applied to the output."
LIST_QUERY_HELP = (
    "JMESPath query applied to the whole list: every page (up to --top) is fetched first, "
    "then the answer is printed."
)


def az_command(
    group: click.Group, name: str, *, help: str, example: str, paged: bool = False
) -> Callable[..., Any]:
    """A command with ``--registry``, ``--server``, ``--output`` and ``--query``.

    ``example`` is required: every command's help ends with one. A ``paged`` command (a list)
    also takes ``--top N``, passed on as ``top``.
    """

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def run(
            server: str | None, output: str, query: str | None, registry: str | None, **kwargs: Any
        ) -> Any:
            return fn(Invocation(server, output, query), **kwargs)

        run = click.option("--registry", "-r", help="Registry name (optional: one default).")(run)
        run = click.option("--query", help=LIST_QUERY_HELP if paged else QUERY_HELP)(run)
        run = click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUT_FORMATS),
            default="json",
            show_default=True,
            help="Output format.",
        )(run)
        run = click.option(
            "--server",
            envvar="FLEET_URL",
            metavar="URL",
            help="Fleet server URL [env FLEET_URL; default http://127.0.0.1:8080].",
        )(run)
        if paged:
            run = top_option(run)
        text = with_example(help, example)
        return group.command(name, cls=AzCommand, help=text)(run)

    return decorator
