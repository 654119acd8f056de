"""The ``fleet`` command: a thin client of the REST API, plus server-host commands."""

from __future__ import annotations

import sys

import click

from fleet.cli.bulk import job
from fleet.cli.device import device
from fleet.cli.group import group
from fleet.cli.keys import keys, registry
from fleet.cli.scheduler import scheduler
from fleet.cli.scope_map import scope_map
from fleet.cli.server import admin, init, serve
from fleet.cli.token import token
from fleet.domain.errors import FleetError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fleet")
def cli() -> None:
    """Registry tokens, scope maps and device credentials for IoT fleets.

    \b
    Operator commands talk to the server's REST API: set FLEET_URL and FLEET_API_KEY.
    Server-host commands (init, admin, serve, keys, registry) use FLEET_DATA_DIR and
    FLEET_DATABASE_URL.
    """


for command in (token, scope_map, group, device, scheduler, init, admin, serve, keys, registry):
    cli.add_command(command)
cli.add_command(job)  # bulk jobs (fleet/cli/bulk.py)


def main() -> None:
    try:
        cli.main(prog_name="fleet", standalone_mode=True)
    except FleetError as exc:
        click.echo(f"error: {exc.message} ({exc.code})", err=True)
        sys.exit(1)
