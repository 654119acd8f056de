"""``fleet scope-map ...``: the shape of ``az acr scope-map ...``."""

from __future__ import annotations

from typing import Any

import click

from fleet.cli.access import access_options, check_access
from fleet.cli.base import Invocation, az_command, rules_json
from fleet.cli.output import Column

SCOPE_MAP_COLUMNS = [
    Column("NAME", "name"),
    Column("TYPE", "scopeMapType"),
    Column("CREATION DATE", "creationDate"),
    Column("DESCRIPTION", "description"),
]


@click.group("scope-map")
def scope_map() -> None:
    """Manage scope maps: sets of repository rules shared by tokens."""


@click.option("--description", default="", help="What the scope map is for.")
@click.option(
    "--repository",
    "repositories",
    multiple=True,
    metavar="REPO ACTION...",
    help="A repository (exact, prefix/* or *) and its actions; repeatable.",
)
@click.option("--name", "-n", required=True, help="Scope map name.")
@az_command(
    scope_map,
    "create",
    help="Create a scope map.",
    example="  fleet scope-map create --name MyScopeMap \\\n"
    "    --repository samples/hello-world content/write content/read \\\n"
    '    --description "Sample scope map"',
)
def create(inv: Invocation, name: str, repositories: tuple[str, ...], description: str) -> None:
    body = {
        "name": name,
        "description": description,
        "repositories": rules_json(repositories, "--repository"),
    }
    inv.show(inv.client.call("POST", "/scope-maps", body), SCOPE_MAP_COLUMNS)


@click.option("--description", default=None, help="New description.")
@click.option(
    "--remove-repository",
    "remove",
    multiple=True,
    metavar="REPO ACTION...",
    help="Remove these actions of a repository rule; repeatable.",
)
@click.option(
    "--add-repository",
    "add",
    multiple=True,
    metavar="REPO ACTION...",
    help="Add actions on a repository; repeatable.",
)
@click.option("--name", "-n", required=True, help="Scope map name.")
@az_command(
    scope_map,
    "update",
    help="Add or remove repository actions; every token using the map changes at once.",
    example="  fleet scope-map update --name MyScopeMap \\\n"
    "    --add-repository samples/nginx content/write content/read \\\n"
    "    --remove-repository samples/hello-world content/write",
)
def update(
    inv: Invocation,
    name: str,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    description: str | None,
) -> None:
    if not add and not remove and description is None:
        raise click.UsageError(
            "nothing to update: give --add-repository, --remove-repository or --description"
        )
    body: dict[str, Any] = {
        "addRepositories": rules_json(add, "--add-repository"),
        "removeRepositories": rules_json(remove, "--remove-repository"),
    }
    if description is not None:
        body["description"] = description
    inv.show(inv.client.call("PATCH", f"/scope-maps/{name}", body), SCOPE_MAP_COLUMNS)


@click.option("--name", "-n", required=True, help="Scope map name.")
@az_command(
    scope_map,
    "show",
    help="Show a scope map and its actions.",
    example="  fleet scope-map show --name MyScopeMap",
)
def show(inv: Invocation, name: str) -> None:
    inv.show(inv.client.call("GET", f"/scope-maps/{name}"), SCOPE_MAP_COLUMNS)


@az_command(
    scope_map,
    "list",
    help="List the scope maps, system-defined ones first, printed page by page.",
    example="  fleet scope-map list --output table\n"
    "  fleet scope-map list --top 5 --query '[].name'",
    paged=True,
)
def list_(inv: Invocation, top: int | None) -> None:
    inv.show_list("/scope-maps", SCOPE_MAP_COLUMNS, top=top)


@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--name", "-n", required=True, help="Scope map name.")
@az_command(
    scope_map,
    "delete",
    help="Delete a scope map. Tokens that use it are left with no permissions.",
    example="  fleet scope-map delete --name MyScopeMap --yes",
)
def delete(inv: Invocation, name: str, yes: bool) -> None:
    if not yes:
        shown = 20  # the first names, then how many more
        answer = inv.client.call("GET", f"/scope-maps/{name}/tokens", params={"limit": shown})
        users = answer["tokens"]
        more = " and more" if answer.get("nextCursor") else ""
        warning = (
            f" Tokens {', '.join(users)}{more} will be left with no permissions." if users else ""
        )
        click.confirm(f"Delete scope map {name!r}?{warning}", abort=True, err=True)
    inv.show(inv.client.call("DELETE", f"/scope-maps/{name}"))


@access_options
@click.option("--name", "-n", required=True, help="Scope map name.")
@az_command(
    scope_map,
    "check-access",
    help="Explain whether a scope map grants an action on a repository: allowed or denied and "
    "every rule that matched (a token using it must also be enabled and have a live "
    "password: see fleet token check-access). Changes nothing.",
    example="  fleet scope-map check-access --name MyScopeMap \\\n"
    "    --repository sample/teama/projectb --action content/delete --output table",
)
def check_access_(inv: Invocation, name: str, repository: str, action: str) -> None:
    check_access(inv, "scopeMap", name, repository, action)
