"""``fleet token ...``: the shape of ``az acr token ...``."""

from __future__ import annotations

from typing import Any

import click

from fleet.cli.access import access_options, check_access
from fleet.cli.base import Invocation, az_command, parse_when, rules_json
from fleet.cli.output import Column

TOKEN_COLUMNS = [
    Column("NAME", "name"),
    Column("SCOPE MAP", "scopeMapId", lambda v: v.rsplit("/", 1)[-1]),
    Column("STATUS", "status"),
    Column("PASSWORD1 EXPIRY", "credentials.passwords[?name=='password1'].expiry | [0]"),
    Column("PASSWORD2 EXPIRY", "credentials.passwords[?name=='password2'].expiry | [0]"),
    Column("CREATION DATE", "creationDate"),
]
PASSWORD_COLUMNS = [
    Column("NAME", "name"),
    Column("CREATION TIME", "creationTime"),
    Column("EXPIRY", "expiry"),
    Column("VALUE", "value"),
]


@click.group("token")
def token() -> None:
    """Manage repository-scoped tokens."""


@token.group("credential")
def credential() -> None:
    """Manage a token's two passwords."""


def _expiry_fields(days: int | None, expiration: str | None) -> dict[str, Any]:
    if days is not None and expiration is not None:
        raise click.UsageError("give --expiration-in-days or --expiration, not both")
    if days is not None:
        return {"expirationInDays": days}
    return {"expiry": parse_when(expiration)} if expiration else {}


def expiry_options(fn: Any) -> Any:
    fn = click.option(
        "--expiration", metavar="TIME", help="Password expiry, ISO 8601 (2027-01-31T00:00:00Z)."
    )(fn)
    return click.option(
        "--expiration-in-days",
        type=click.IntRange(1, 3650),
        help="Password expiry, in days from now.",
    )(fn)


@expiry_options
@click.option("--no-passwords", is_flag=True, help="Create no password now.")
@click.option(
    "--status", type=click.Choice(["enabled", "disabled"]), default="enabled", show_default=True
)
@click.option("--scope-map", help="An existing scope map for the token.")
@click.option(
    "--repository",
    "repositories",
    multiple=True,
    metavar="REPO ACTION...",
    help="A repository (exact, prefix/* or *) and its actions; repeatable. "
    "Creates the scope map <name>-scope-map.",
)
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    token,
    "create",
    help="Create a token; both passwords are shown once, here.",
    example="  fleet token create --name MyToken \\\n"
    "    --repository samples/hello-world content/write content/read",
)
def create(
    inv: Invocation,
    name: str,
    repositories: tuple[str, ...],
    scope_map: str | None,
    status: str,
    no_passwords: bool,
    expiration_in_days: int | None,
    expiration: str | None,
) -> None:
    if bool(repositories) == bool(scope_map):
        raise click.UsageError("give either --scope-map or one or more --repository, not both")
    body: dict[str, Any] = {"name": name, "status": status, "noPasswords": no_passwords}
    if scope_map:
        body["scopeMap"] = scope_map
    else:
        body["repositories"] = rules_json(repositories, "--repository")
    body |= _expiry_fields(expiration_in_days, expiration)
    inv.show(inv.client.call("POST", "/tokens", body), TOKEN_COLUMNS)


@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    token,
    "show",
    help="Show a token (never its passwords).",
    example="  fleet token show --name MyToken",
)
def show(inv: Invocation, name: str) -> None:
    inv.show(inv.client.call("GET", f"/tokens/{name}"), TOKEN_COLUMNS)


@az_command(
    token,
    "list",
    help="List the tokens by name, printed page by page as they arrive.",
    example="  fleet token list --output table\n"
    "  fleet token list --top 10 --output tsv\n"
    "  fleet token list --query \"[?status=='disabled'].name\"",
    paged=True,
)
def list_(inv: Invocation, top: int | None) -> None:
    inv.show_list("/tokens", TOKEN_COLUMNS, top=top)


@access_options
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    token,
    "check-access",
    help="Explain whether a token may do an action on a repository: allowed or denied, every "
    "rule of its scope map that matched, and why when denied (token disabled, no live "
    "password, no rule matched, the action not granted). Changes nothing.",
    example="  fleet token check-access --name MyToken \\\n"
    "    --repository samples/hello-world --action content/write\n"
    "  fleet token check-access --name MyToken --repository samples/nginx \\\n"
    "    --action content/read --query decision --output tsv",
)
def check_access_(inv: Invocation, name: str, repository: str, action: str) -> None:
    check_access(inv, "token", name, repository, action)


@click.option("--status", type=click.Choice(["enabled", "disabled"]), help="New status.")
@click.option("--scope-map", help="New scope map.")
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    token,
    "update",
    help="Change a token's scope map or status. Disabling says when the registry refuses "
    "the last JWT issued under it.",
    example="  fleet token update --name MyToken --status disabled",
)
def update(inv: Invocation, name: str, scope_map: str | None, status: str | None) -> None:
    if scope_map is None and status is None:
        raise click.UsageError("nothing to update: give --scope-map and/or --status")
    body = {k: v for k, v in {"scopeMap": scope_map, "status": status}.items() if v is not None}
    answer = inv.client.call("PATCH", f"/tokens/{name}", body)
    inv.show(answer, TOKEN_COLUMNS)
    if status == "disabled":
        inv.tell_access_end(answer, f"token {name}")


@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    token,
    "delete",
    help="Delete a token: its passwords stop working at once.",
    example="  fleet token delete --name MyToken --yes",
)
def delete(inv: Invocation, name: str, yes: bool) -> None:
    if not yes:
        click.confirm(
            f"Delete token {name!r}? Its passwords stop working at once", abort=True, err=True
        )
    inv.tell_access_end(inv.client.call("DELETE", f"/tokens/{name}"), f"token {name}")


def _slots(password1: bool, password2: bool) -> list[str]:
    return [s for s, on in (("password1", password1), ("password2", password2)) if on]


@expiry_options
@click.option("--password2", is_flag=True, help="Generate password2.")
@click.option("--password1", is_flag=True, help="Generate password1.")
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    credential,
    "generate",
    help="Generate new passwords (both unless one is named); each is shown once, here.",
    example="  TOKEN_PWD=$(fleet token credential generate --name MyToken \\\n"
    "    --expiration-in-days 30 --password1 \\\n"
    "    --query 'passwords[0].value' --output tsv)",
)
def generate(
    inv: Invocation,
    name: str,
    password1: bool,
    password2: bool,
    expiration_in_days: int | None,
    expiration: str | None,
) -> None:
    body: dict[str, Any] = {"passwords": _slots(password1, password2) or ["password1", "password2"]}
    body |= _expiry_fields(expiration_in_days, expiration)
    result = inv.client.call("POST", f"/tokens/{name}/credentials/generate", body)
    inv.show(result, PASSWORD_COLUMNS if inv.output == "table" and not inv.query else None)


@click.option("--password2", is_flag=True, help="Delete password2.")
@click.option("--password1", is_flag=True, help="Delete password1.")
@click.option("--name", "-n", required=True, help="Token name.")
@az_command(
    credential,
    "delete",
    help="Delete one or both passwords of a token.",
    example="  fleet token credential delete --name MyToken --password1",
)
def delete_credential(inv: Invocation, name: str, password1: bool, password2: bool) -> None:
    slots = _slots(password1, password2)
    if not slots:
        raise click.UsageError("name the password to delete: --password1 and/or --password2")
    result = None
    for slot in slots:
        result = inv.client.call("DELETE", f"/tokens/{name}/credentials/{slot}")
    inv.show(result, TOKEN_COLUMNS)
    inv.tell_access_end(result, f"token {name}, {' and '.join(slots)}")
