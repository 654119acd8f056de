"""``fleet token check-access`` and ``fleet scope-map check-access``: the access explainer.

Both ask ``GET /access``; the answer says allowed or denied, every rule that matched the
repository (and which grant the action), and why when denied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from fleet.cli.base import Invocation, split_words
from fleet.cli.output import Column
from fleet.domain.actions import Action


def _rules(rules: list[dict[str, Any]]) -> str:
    shown = [
        f"{r['repository']}: {' '.join(r['actions'])}{' (grants)' if r['grantsAction'] else ''}"
        for r in rules
    ]
    return "; ".join(shown) or "none"


ACCESS_COLUMNS = [
    Column("DECISION", "decision"),
    Column("REPOSITORY", "repository"),
    Column("ACTION", "action"),
    Column("SCOPE MAP", "scopeMap.name"),
    Column("MATCHED RULES", "matchedRules", _rules),
    Column("REASON", "reasons[0].message"),
]


def access_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--repository",
        required=True,
        metavar="REPO",
        help="A repository name (not a pattern), for example samples/hello-world.",
    )(fn)
    return click.option(
        "--action",
        "-a",
        required=True,
        type=click.Choice([a.value for a in Action]),
        help="The action asked about.",
    )(fn)


def check_access(inv: Invocation, param: str, name: str, repository: str, action: str) -> None:
    words = split_words(repository)
    if len(words) != 1:
        raise click.UsageError(
            "--repository takes one repository name; give the action with --action, for "
            "example --repository samples/hello-world --action content/read"
        )
    params = {param: name, "repository": words[0], "action": action}
    inv.show(inv.client.call("GET", "/access", params=params), ACCESS_COLUMNS)
