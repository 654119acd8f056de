"""``fleet admin ...-operator``: dashboard accounts, managed on the server host.

A generated password is printed once, alone on the last line, so a script can take it with
``tail -n 1``; ``--password-stdin`` sets a chosen one instead.
"""

from __future__ import annotations

import click

from fleet.cli.base import with_example
from fleet.cli.host import build_services, load_settings
from fleet.domain.operators import ROLES

LOCAL_ACTOR = "cli:server-host"


def _read_password(password_stdin: bool) -> str | None:
    if not password_stdin:
        return None
    value = click.get_text_stream("stdin").readline().rstrip("\r\n")
    if not value:
        raise click.UsageError("--password-stdin read an empty line")
    return value


def _password_option(command: click.Command) -> click.Command:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input instead of generating one.",
    )(command)


@click.command(
    "create-operator",
    help=with_example(
        "Create a dashboard operator. A generated password is printed once, on the last line.",
        "  fleet admin create-operator --name alice --role admin\n"
        "  printf '%s\\n' \"$PW\" | fleet admin create-operator --name bob --role viewer "
        "--password-stdin",
    ),
)
@click.option("--name", "-n", required=True, help="The name to sign in with.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="viewer reads everything; admin also changes and revokes.",
)
@_password_option
def create_operator(name: str, role: str, password_stdin: bool) -> None:
    services = build_services(load_settings())
    view, generated = services.operators.create(
        name, role, _read_password(password_stdin), actor=LOCAL_ACTOR
    )
    if generated is None:
        click.echo(f"created operator {view.name!r} ({view.role}) with the password given")
        return
    click.echo(f"created operator {view.name!r} ({view.role}); the password is shown only now:")
    click.echo(generated)


@click.command(
    "list-operators",
    help=with_example(
        "List dashboard operators: name, role, created, last sign-in (never passwords).",
        "  fleet admin list-operators",
    ),
)
def list_operators() -> None:
    services = build_services(load_settings())
    for op in services.operators.list():
        last = op.last_sign_in_at.isoformat() if op.last_sign_in_at else "never signed in"
        click.echo(f"{op.name}\t{op.role}\t{op.created_at.isoformat()}\t{last}")


@click.command(
    "delete-operator",
    help=with_example(
        "Delete a dashboard operator; their sessions end at their next request.",
        "  fleet admin delete-operator --name alice",
    ),
)
@click.option("--name", "-n", required=True)
def delete_operator(name: str) -> None:
    services = build_services(load_settings())
    services.operators.delete(name, actor=LOCAL_ACTOR)
    click.echo(f"deleted operator {name!r}")


@click.command(
    "reset-password",
    help=with_example(
        "Give an operator a new password and end their sessions. A generated password is "
        "printed once, on the last line.",
        "  fleet admin reset-password --name alice",
    ),
)
@click.option("--name", "-n", required=True)
@_password_option
def reset_password(name: str, password_stdin: bool) -> None:
    services = build_services(load_settings())
    generated = services.operators.reset_password(
        name, _read_password(password_stdin), actor=LOCAL_ACTOR
    )
    if generated is None:
        click.echo(f"set the password given for {name!r}; their sessions have ended")
        return
    click.echo(f"new password for {name!r}; their sessions have ended; it is shown only now:")
    click.echo(generated)


COMMANDS = (create_operator, list_operators, delete_operator, reset_password)
