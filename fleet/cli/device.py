"""``fleet device ...``: enrolled devices."""

from __future__ import annotations

from typing import Any

import click

from fleet.cli.base import Invocation, az_command
from fleet.cli.bulk import start_group_job
from fleet.cli.output import Column

DEVICE_COLUMNS = [
    Column("DEVICE", "deviceId"),
    Column("GROUP", "group"),
    Column("STATUS", "status"),
    Column("SLOT", "activeSlot"),
    Column("VERSION", "ackedCredentialsVersion"),
    Column("PENDING", "pendingDeliveries"),
    Column("LAST SEEN", "lastSeenAt"),
    Column("LAST PULL OK", "lastPullOk"),
]


@click.group("device")
def device() -> None:
    """Enrolled devices: approve, reject, disable, enable, delete, redeliver, rotate."""


@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option(
    "--sort",
    type=click.Choice(["device_id", "last_seen", "expiry", "enrolled"]),
    help="Sort by (default device_id); devices without the time come last ascending.",
)
@click.option("--pending", is_flag=True, help="Only devices with a delivery not acknowledged.")
@click.option("--not-seen", is_flag=True, help="Only devices silent beyond their group's limit.")
@click.option("--expiring", is_flag=True, help="Only devices whose password expires soon.")
@click.option("--prefix", help="Only devices whose id starts with this (case counts).")
@click.option("--status", type=click.Choice(["pending", "active", "disabled"]))
@click.option("--group", help="Only this group's devices.")
@az_command(
    device,
    "list",
    help="List devices (by id, or as sorted), printed page by page as they arrive.",
    example="  fleet device list -o table\n"
    "  fleet device list --group pilots --status disabled --top 20 -o tsv\n"
    "  fleet device list --prefix pi- --not-seen --sort last_seen -o table",
    paged=True,
)
def list_(
    inv: Invocation,
    group: str | None,
    status: str | None,
    prefix: str | None,
    expiring: bool,
    not_seen: bool,
    pending: bool,
    sort: str | None,
    desc: bool,
    top: int | None,
) -> None:
    flags = {"expiring": expiring, "not_seen": not_seen, "pending": pending}
    params = {"group": group, "status": status, "q": prefix, "sort": sort}
    params |= {name: "1" for name, on in flags.items() if on}
    if desc:
        params["dir"] = "desc"
    inv.show_list("/devices", DEVICE_COLUMNS, params=params, top=top)


@click.option("--name", "-n", "device_id", required=True, help="Device id.")
@az_command(device, "show", help="Show a device.", example="  fleet device show --name rpi-0001")
def show(inv: Invocation, device_id: str) -> None:
    inv.show(inv.client.call("GET", f"/devices/{device_id}"), DEVICE_COLUMNS)


def _action(name: str, help: str) -> None:
    @click.option("--name", "-n", "device_id", required=True, help="Device id.")
    @az_command(device, name, help=help, example=f"  fleet device {name} --name rpi-0001")
    def run(inv: Invocation, device_id: str) -> None:
        answer = inv.client.call("POST", f"/devices/{device_id}/{name}")
        inv.show(answer, DEVICE_COLUMNS)
        if name == "disable":
            inv.tell_access_end(answer, f"device {device_id}")

    run.__name__ = name.replace("-", "_")


_action("approve", "Approve a pending device: its credentials are delivered.")
_action("enable", "Enable a disabled device and deliver it a fresh password.")
_action(
    "redeliver",
    "Publish again what the device has not acknowledged; with nothing "
    "pending, rotate its password.",
)
_action(
    "allow-reenroll", "Let this device id enroll once more (new keys; no takeover without this)."
)


def _one_or_group(device_id: str | None, group: str | None) -> None:
    if (device_id is None) == (group is None):
        raise click.UsageError(
            "give --name DEVICE for one device or --group GROUP for every device of a "
            + ("group, not both" if device_id else "group")
        )


def _bulk_options(fn: Any) -> Any:
    """``--name`` or ``--group`` (exactly one, checked by ``_one_or_group``), ``--no-wait``."""
    fn = click.option("--name", "-n", "device_id", help="Device id.")(fn)
    fn = click.option(
        "--group", "-g", help="Every device of this group, as one job in the background."
    )(fn)
    return click.option(
        "--no-wait",
        is_flag=True,
        help="With --group: print the job as soon as it is accepted, without following it "
        "(`fleet job show --id N --wait` follows it later).",
    )(fn)


@click.option("--reason", help="With --group: recorded on each device's audit event.")
@_bulk_options
@az_command(
    device,
    "disable",
    help="Disable a device: its registry token and broker login stop at once, and it "
    "is told to wipe its credentials. Says when the registry refuses the last JWT it was "
    "issued (at most its group's JWT lifetime plus the registry's 60 s leeway). With "
    "--group, every device of the group, in batches on the server: a progress bar on a "
    "terminal, progress lines otherwise, a summary at the end; exit 1 if any device failed.",
    example="  fleet device disable --name rpi-0001\n"
    "  fleet device disable --group pilots --reason 'lost shipment'\n"
    "  fleet device disable --group pilots --no-wait -o table",
)
def disable(
    inv: Invocation,
    device_id: str | None,
    group: str | None,
    no_wait: bool,
    reason: str | None,
) -> None:
    _one_or_group(device_id, group)
    if group is not None:
        body = {"reason": reason} if reason is not None else None
        start_group_job(inv, "disable", group, body, wait=not no_wait)
        return
    if reason is not None:
        raise click.UsageError("--reason goes with --group")
    answer = inv.client.call("POST", f"/devices/{device_id}/disable")
    inv.show(answer, DEVICE_COLUMNS)
    inv.tell_access_end(answer, f"device {device_id}")


@click.option(
    "--now",
    is_flag=True,
    required=True,
    help="Rotate now (the scheduler rotates on its own before expiry).",
)
@_bulk_options
@az_command(
    device,
    "rotate",
    help="Put a new password in the device's other slot and "
    "deliver it; the old one works until the device acknowledges the new one. With --group, "
    "every active device of the group, in batches on the server: a progress bar on a "
    "terminal, progress lines otherwise, a summary at the end; exit 1 if any device failed.",
    example="  fleet device rotate --name rpi-0001 --now\n"
    "  fleet device rotate --group pilots --now\n"
    "  fleet device rotate --group pilots --now --no-wait",
)
def rotate(
    inv: Invocation, device_id: str | None, group: str | None, no_wait: bool, now: bool
) -> None:
    _one_or_group(device_id, group)
    if group is not None:
        start_group_job(inv, "rotate", group, None, wait=not no_wait)
        return
    inv.show(inv.client.call("POST", f"/devices/{device_id}/rotate"), DEVICE_COLUMNS)


@click.option(
    "--image",
    "images",
    multiple=True,
    help="An image to pull (repeatable); none: the device's configured images.",
)
@click.option("--name", "-n", "device_id", required=True, help="Device id.")
@az_command(
    device,
    "pull",
    help="Tell a device to pull now (a signed command over MQTT).",
    example="  fleet device pull --name rpi-0001 --image samples/app:1.1",
)
def pull(inv: Invocation, device_id: str, images: tuple[str, ...]) -> None:
    inv.show(
        inv.client.call("POST", f"/devices/{device_id}/pull", {"images": list(images)}),
        DEVICE_COLUMNS,
    )


@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--name", "-n", "device_id", required=True, help="Device id.")
@az_command(
    device,
    "reject",
    help="Reject a pending device: its record, registry token and broker login are removed "
    "(it never had credentials); it may enroll again only with a valid secret or code.",
    example="  fleet device reject --name rpi-0001 --yes",
)
def reject(inv: Invocation, device_id: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Reject pending device {device_id!r}?", abort=True, err=True)
    inv.client.call("POST", f"/devices/{device_id}/reject")


@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--name", "-n", "device_id", required=True, help="Device id.")
@az_command(
    device,
    "delete",
    help="Delete a device, its registry token and its broker login.",
    example="  fleet device delete --name rpi-0001 --yes",
)
def delete(inv: Invocation, device_id: str, yes: bool) -> None:
    if not yes:
        click.confirm(
            f"Delete device {device_id!r}? Its credentials stop working at once",
            abort=True,
            err=True,
        )
    inv.tell_access_end(inv.client.call("DELETE", f"/devices/{device_id}"), f"device {device_id}")
