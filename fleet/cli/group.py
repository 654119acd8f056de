"""``fleet group ...``: device groups and their enrollment secrets."""

from __future__ import annotations

from typing import Any

import click

from fleet.cli.base import Invocation, az_command, parse_when
from fleet.cli.output import Column
from fleet.registry_auth.tokens import (
    DEFAULT_DEVICE_TOKEN_LIFETIME,
    MAX_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
)

GROUP_COLUMNS = [
    Column("NAME", "name"),
    Column("SCOPE MAP", "scopeMap"),
    Column("LIFETIME (DAYS)", "passwordLifetimeDays"),
    Column("WINDOW (DAYS)", "rotationWindowDays"),
    Column("INACTIVITY (DAYS)", "inactivityLimitDays"),
    Column("APPROVAL", "requireApproval"),
    Column("JWT (S)", "jwtLifetimeSeconds"),
    Column("DEVICES", "devices"),
]
SECRET_COLUMNS = [
    Column("ID", "id"),
    Column("KIND", "kind"),
    Column("ENDS IN", "hint"),
    Column("EXPIRES", "expiresAt"),
    Column("REVOKED", "revokedAt"),
    Column("USED BY", "usedBy"),
    Column("VALUE", "value"),
]


@click.group("group")
def group() -> None:
    """Device groups: a read-only scope map, password lifetimes, enrollment secrets."""


@group.group("secret")
def secret() -> None:
    """Enrollment secrets (reusable) and one-time codes of a group."""


def _settings_options(fn: Any, *, defaults: bool) -> Any:
    def opt(*names: str, **kw: Any) -> None:
        nonlocal fn
        if not defaults:  # update: None means "leave as it is"
            kw["default"] = None
            kw.pop("show_default", None)
        fn = click.option(*names, **kw)(fn)

    opt(
        "--jwt-lifetime",
        "jwt_lifetime_seconds",
        type=click.IntRange(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME),
        default=DEFAULT_DEVICE_TOKEN_LIFETIME,
        show_default=True,
        help="Seconds each registry JWT of its devices lives. A disabled device's access ends "
        "at most this plus the registry's 60 s leeway later; a pull longer than it "
        "re-authenticates on its own.",
    )
    opt(
        "--require-approval/--no-require-approval",
        default=False,
        show_default=True,
        help="An operator approves each device before it gets credentials.",
    )
    opt(
        "--inactivity-limit-days",
        type=click.IntRange(1),
        help="Disable devices silent for longer than this.",
    )
    opt(
        "--rotation-window-days",
        type=click.IntRange(1),
        default=7,
        show_default=True,
        help="Rotate this long before a password expires.",
    )
    opt(
        "--password-lifetime-days",
        type=click.IntRange(1, 3650),
        default=30,
        show_default=True,
        help="Lifetime of each device password.",
    )
    return fn


@lambda fn: _settings_options(fn, defaults=True)
@click.option(
    "--scope-map", required=True, help="A scope map with only content/read and metadata/read."
)
@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    group,
    "create",
    help="Create a device group.",
    example="  fleet group create --name pilots --scope-map devices-read \\\n"
    "    --password-lifetime-days 30 --rotation-window-days 7",
)
def create(inv: Invocation, name: str, **fields: Any) -> None:
    body = {
        "name": name,
        "scopeMap": fields.pop("scope_map"),
        "passwordLifetimeDays": fields["password_lifetime_days"],
        "rotationWindowDays": fields["rotation_window_days"],
        "inactivityLimitDays": fields["inactivity_limit_days"],
        "requireApproval": fields["require_approval"],
        "jwtLifetimeSeconds": fields["jwt_lifetime_seconds"],
    }
    inv.show(inv.client.call("POST", "/groups", body), GROUP_COLUMNS)


@az_command(
    group,
    "list",
    help="List device groups by name, printed page by page.",
    example="  fleet group list -o table\n  fleet group list --top 1 --query '[0].name'",
    paged=True,
)
def list_(inv: Invocation, top: int | None) -> None:
    inv.show_list("/groups", GROUP_COLUMNS, top=top)


@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    group,
    "show",
    help="Show a device group and its secrets (never their values).",
    example="  fleet group show --name pilots",
)
def show(inv: Invocation, name: str) -> None:
    inv.show(inv.client.call("GET", f"/groups/{name}"), GROUP_COLUMNS)


@lambda fn: _settings_options(fn, defaults=False)
@click.option("--scope-map", help="New scope map (read-only actions only).")
@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    group,
    "update",
    help="Change a device group.",
    example="  fleet group update --name pilots --inactivity-limit-days 14\n"
    "  fleet group update --name pilots --jwt-lifetime 300",
)
def update(inv: Invocation, name: str, **fields: Any) -> None:
    keys = {
        "scope_map": "scopeMap",
        "password_lifetime_days": "passwordLifetimeDays",
        "rotation_window_days": "rotationWindowDays",
        "inactivity_limit_days": "inactivityLimitDays",
        "require_approval": "requireApproval",
        "jwt_lifetime_seconds": "jwtLifetimeSeconds",
    }
    body = {keys[k]: v for k, v in fields.items() if v is not None}
    if not body:
        raise click.UsageError("nothing to update")
    inv.show(inv.client.call("PATCH", f"/groups/{name}", body), GROUP_COLUMNS)


@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    group,
    "delete",
    help="Delete a device group with no devices.",
    example="  fleet group delete --name pilots --yes",
)
def delete(inv: Invocation, name: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete device group {name!r}?", abort=True, err=True)
    inv.client.call("DELETE", f"/groups/{name}")


@click.option("--expiration-in-days", type=click.IntRange(1, 3650), help="Expire after.")
@click.option("--expiration", metavar="TIME", help="Expire at (ISO 8601).")
@click.option("--one-time", is_flag=True, help="A code for one device, usable once.")
@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    secret,
    "create",
    help="Create an enrollment secret or one-time code; its value is shown once, here.",
    example="  SECRET=$(fleet group secret create --name pilots \\\n"
    "    --query value --output tsv)",
)
def secret_create(
    inv: Invocation,
    name: str,
    one_time: bool,
    expiration: str | None,
    expiration_in_days: int | None,
) -> None:
    body: dict[str, Any] = {"oneTime": one_time}
    if expiration and expiration_in_days:
        raise click.UsageError("give --expiration or --expiration-in-days, not both")
    if expiration:
        body["expiry"] = parse_when(expiration)
    if expiration_in_days:
        body["expirationInDays"] = expiration_in_days
    inv.show(inv.client.call("POST", f"/groups/{name}/secrets", body), SECRET_COLUMNS)


@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    secret,
    "list",
    help="List a group's enrollment secrets and codes, oldest first (never their values).",
    example="  fleet group secret list --name pilots -o table\n"
    "  fleet group secret list --name pilots --top 10 --query \"[?kind=='code'].id\"",
    paged=True,
)
def secret_list(inv: Invocation, name: str, top: int | None) -> None:
    inv.show_list(f"/groups/{name}/secrets", SECRET_COLUMNS, top=top)


@click.option("--id", "secret_id", required=True, type=int, help="The secret's id (group show).")
@click.option("--name", "-n", required=True, help="Group name.")
@az_command(
    secret,
    "revoke",
    help="Revoke an enrollment secret or code.",
    example="  fleet group secret revoke --name pilots --id 3",
)
def secret_revoke(inv: Invocation, name: str, secret_id: int) -> None:
    inv.show(inv.client.call("DELETE", f"/groups/{name}/secrets/{secret_id}"), SECRET_COLUMNS)
