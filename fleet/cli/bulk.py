"""``fleet job ...``: the server's bulk jobs, and following one to its end.

A job is followed by polling ``GET /jobs/{id}``: on a terminal a progress bar on stderr,
redrawn in place; otherwise (a pipe, a CI log) a plain line on stderr when the counts have
moved, at most every ``LINE_EVERY_S``. The job itself goes to stdout in the chosen output
format once it ends, and the exit status is 1 if any device failed (or the job did).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from fleet.cli.base import Invocation, az_command
from fleet.cli.output import Column

POLL_S = 0.5
LINE_EVERY_S = 2.0
BAR_WIDTH = 30
SHOWN_ERRORS = 5

JOB_COLUMNS = [
    Column("JOB", "id"),
    Column("KIND", "kind"),
    Column("GROUP", "group"),
    Column("STATE", "state"),
    Column("TOTAL", "total"),
    Column("DONE", "done"),
    Column("SKIPPED", "skipped"),
    Column("FAILED", "failed"),
    Column("ACTOR", "actor"),
    Column("FINISHED", "finishedAt"),
]


def on_terminal() -> bool:
    """Whether stderr, where progress goes, is a terminal."""
    return sys.stderr.isatty()


def finished(job: dict[str, Any]) -> bool:
    return job.get("state") in ("done", "failed")


def progress_text(job: dict[str, Any]) -> str:
    """``rotate pilots: 2000/100000 done, 0 failed``"""
    moved = job["done"] + job["skipped"]
    return f"{job['kind']} {job['group']}: {moved}/{job['total']} done, {job['failed']} failed"


def progress_bar(job: dict[str, Any]) -> str:
    total = job["total"] or 1
    share = min(1.0, (job["done"] + job["skipped"] + job["failed"]) / total)
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"\r[{bar}] {share:4.0%} {progress_text(job)}"


def summary(job: dict[str, Any]) -> str:
    verb = "rotated" if job["kind"] == "rotate" else "disabled"
    text = (
        f"{job['kind']} {job['group']} (job {job['id']}) {job['state']}: {job['done']} "
        f"{verb}, {job['skipped']} skipped, {job['failed']} failed of {job['total']}"
    )
    if job.get("message"):
        text += f"; {job['message']}"
    return text


def follow(
    fetch: Callable[[], dict[str, Any]],
    job: dict[str, Any],
    *,
    terminal: bool,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll ``fetch`` until the job ends, telling progress on stderr; the job at its end."""
    last_line: tuple[int, int, int] | None = None
    last_at = -LINE_EVERY_S
    while True:
        counts = (job["done"], job["skipped"], job["failed"])
        if terminal:
            click.echo(progress_bar(job), nl=False, err=True)
        elif counts != last_line and (finished(job) or clock() - last_at >= LINE_EVERY_S):
            click.echo(progress_text(job), err=True)
            last_line, last_at = counts, clock()
        if finished(job):
            break
        sleep(POLL_S)
        job = fetch()
    if terminal:
        click.echo("", err=True)
    return job


def report(inv: Invocation, job: dict[str, Any], *, wait: bool) -> None:
    """Follow ``job`` (unless ``wait`` is off), print it, and exit 1 if any device failed."""
    if wait and not finished(job):
        path = f"/jobs/{job['id']}"
        try:
            job = follow(lambda: inv.client.call("GET", path), job, terminal=on_terminal())
        except KeyboardInterrupt:
            click.echo(
                f"\nstopped following; the job goes on on the server: "
                f"`fleet job show --id {job['id']} --wait`",
                err=True,
            )
            sys.exit(130)
    inv.show(job, JOB_COLUMNS)
    if not finished(job):
        click.echo(
            f"job {job['id']} is {job['state']}; follow it with "
            f"`fleet job show --id {job['id']} --wait`",
            err=True,
        )
        return
    click.echo(summary(job), err=True)
    for error in job["errors"][:SHOWN_ERRORS]:
        click.echo(f"  {error['deviceId']}: {error['message']}", err=True)
    if job["failed"] > len(job["errors"][:SHOWN_ERRORS]):
        shown = len(job["errors"][:SHOWN_ERRORS])
        click.echo(f"  ... and {job['failed'] - shown} more failed", err=True)
    if job["failed"] or job["state"] == "failed":
        sys.exit(1)


def start_group_job(inv: Invocation, kind: str, group: str, body: Any, wait: bool) -> None:
    """``fleet device rotate|disable --group G``: ask for the job, then follow it."""
    job = inv.client.call("POST", f"/groups/{group}/{kind}", body)
    report(inv, job, wait=wait)


@click.group("job")
def job() -> None:
    """Bulk jobs: a whole group rotated or disabled in the background."""


@click.option("--wait", is_flag=True, help="Follow the job to its end (progress on stderr).")
@click.option("--id", "job_id", type=click.IntRange(min=1), required=True, help="Job id.")
@az_command(
    job,
    "show",
    help="Show a bulk job; with --wait, follow it to its end and exit 1 if a device failed.",
    example="  fleet job show --id 7\n  fleet job show --id 7 --wait -o table",
)
def show(inv: Invocation, job_id: int, wait: bool) -> None:
    found = inv.client.call("GET", f"/jobs/{job_id}")
    if wait:
        report(inv, found, wait=True)
    else:
        inv.show(found, JOB_COLUMNS)


@az_command(
    job,
    "list",
    help="List bulk jobs, the newest first, printed page by page as they arrive.",
    example="  fleet job list -o table\n  fleet job list --top 5",
    paged=True,
)
def list_(inv: Invocation, top: int | None) -> None:
    inv.show_list("/jobs", JOB_COLUMNS, top=top)
