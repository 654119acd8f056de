"""``fleet scheduler ...``: what the reconciler did, and a pass on demand."""

from __future__ import annotations

import json

import click

from fleet.cli.base import Invocation, az_command, with_example
from fleet.cli.host import build_services, load_settings
from fleet.cli.output import Column

RUN_COLUMNS = [
    Column("STARTED", "startedAt"),
    Column("FINISHED", "finishedAt"),
    Column("NODE", "node"),
    Column("ROTATED", "summary.rotated"),
    Column("RETIRED", "summary.retired"),
    Column("DISABLED", "summary.tokens_disabled"),
    Column("INACTIVE", "summary.devices_disabled_inactive"),
    Column("WARNINGS", "summary.warnings"),
    Column("PUBLISHED", "summary.published"),
    Column("ERROR", "error"),
]

OUTBOX_COLUMNS = [
    Column("WEBHOOK", "webhookConfigured"),
    Column("PENDING", "pending"),
    Column("OLDEST (S)", "oldestPendingSeconds"),
    Column("GIVEN UP", "givenUp"),
    Column("LAST ERROR", "lastError"),
    Column("AT", "lastErrorAt"),
]


@click.group("scheduler")
def scheduler() -> None:
    """The reconciler that rotates passwords and carries out planned disables."""


@az_command(
    scheduler,
    "status",
    help="Last run, next run, what the recent runs did, and the warning webhook's outbox "
    "(events waiting, the oldest one's age, the last error).",
    example="  fleet scheduler status --output table",
)
def status(inv: Invocation) -> None:
    result = inv.client.call("GET", "/scheduler")
    if inv.output == "table" and not inv.query:
        inv.show(result["recentRuns"], RUN_COLUMNS)
        click.echo()
        inv.show([result["outbox"]], OUTBOX_COLUMNS)
    else:
        inv.show(result)


@scheduler.command(
    "run-once",
    help=with_example(
        "Run one reconciler pass now, on the server host. It takes the scheduler lock, so no "
        "other pass runs at the same time, and says so when another scheduler holds it.",
        "  fleet scheduler run-once",
    ),
)
def run_once() -> None:
    from fleet.scheduler import FleetScheduler

    # The servers hear the devices' answers: this one-off command must not take its share.
    services = build_services(load_settings(), listen_status=False)
    runner = FleetScheduler(services)
    try:
        summary = runner.tick()
    finally:
        runner.stop()
        services.close()
    if summary is None:
        raise click.ClickException("another scheduler holds the lock; try again later")
    click.echo(json.dumps(json.loads(summary.as_json()), indent=2))
