"""A group's enrollment secrets and one-time codes, and its approval queue.

A new secret's value is shown in the answer to the POST that made it, and nowhere else: a
redirect would need it stored somewhere to show it again. That answer carries
``Cache-Control: no-store`` like every dashboard page, so a reload or Back does not bring
it back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import flash, redirect, request, url_for

from fleet.db.devices import CODE, PENDING, SECRET
from fleet.domain.errors import ConflictError, FleetError, NotFoundError, ValidationError
from fleet.http_errors import status_of
from fleet.services.devices import APPROVAL_QUEUE_PAGE
from fleet.services.views import DeviceView, SecretView
from fleet.web.blueprint import admin_required, web
from fleet.web.format import exact
from fleet.web.session import services
from fleet.web.views.groups import actor, confirm_page, group_page

KIND_LABEL = {SECRET: "enrollment secret", CODE: "one-time code"}
MAX_DEVICE_ID_CHARS = 64


def _expiry(raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw[:32])
    except ValueError:
        raise ValidationError(
            f"the expiry is a time such as 2026-12-31T18:00 (UTC); got {raw[:32]!r}",
            code="InvalidExpiry",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@web.post("/groups/<name>/secrets")
@admin_required
def groups_secret_create(name: str) -> Any:
    kind = request.form.get("kind", "")
    raw_expiry = request.form.get("expires_at", "")[:32]
    form = {"kind": kind, "expires_at": raw_expiry}
    try:
        if kind not in KIND_LABEL:
            raise ValidationError("choose an enrollment secret or a one-time code")
        made = services().groups.create_secret(
            name, one_time=kind == CODE, expires_at=_expiry(raw_expiry), actor=actor()
        )
    except FleetError as exc:
        return group_page(name, status_of(exc), secret_form=form, secret_error=exc.message)
    return group_page(name, 201, created=made, created_label=KIND_LABEL[made.kind])


def _secret_of(name: str, secret_id: int) -> SecretView:
    return services().groups.secret(name, secret_id)


@web.route("/groups/<name>/secrets/<int:secret_id>/revoke", methods=["GET", "POST"])
@admin_required
def groups_secret_revoke(name: str, secret_id: int) -> Any:
    secret = _secret_of(name, secret_id)
    label = KIND_LABEL.get(secret.kind, secret.kind)
    if request.method == "GET":
        return confirm_page(
            title=f"Revoke the {label} ending in {secret.hint}",
            lines=[
                f"The {label} of group {name} ending in {secret.hint} stops working at once: "
                "no device can enroll with it any more.",
                "Devices that already enrolled with it keep their credentials.",
                "This cannot be undone; create a new one if you need one.",
            ],
            button="Revoke",
            back=url_for("web.groups_show", name=name),
        )
    services().groups.revoke_secret(name, secret_id, actor=actor())
    flash(f"The {label} ending in {secret.hint} is revoked.")
    return redirect(url_for("web.groups_show", name=name), 303)


def _device_in(name: str, device_id: str) -> DeviceView:
    device = services().devices.show(device_id[:MAX_DEVICE_ID_CHARS])
    if device.group != name:
        raise NotFoundError(f"device {device_id!r} is not in group {name!r}", code="DeviceNotFound")
    return device


@web.post("/groups/<name>/devices/<device_id>/approve")
@admin_required
def groups_device_approve(name: str, device_id: str) -> Any:
    _device_in(name, device_id)
    services().devices.approve(device_id, actor=actor())
    flash(f"{device_id} approved: its registry credentials are on their way to it.")
    return redirect(url_for("web.groups_show", name=name), 303)


@web.post("/groups/<name>/approve")
@admin_required
def groups_devices_approve(name: str) -> Any:
    """Approve the devices ticked in the queue (at most one page of it)."""
    chosen = list(dict.fromkeys(request.form.getlist("device_id")))[:APPROVAL_QUEUE_PAGE]
    if not chosen:
        flash("No device was selected: tick the devices to approve first.")
        return redirect(url_for("web.groups_show", name=name), 303)
    approved, refused = [], []
    for device_id in chosen:
        try:
            _device_in(name, device_id)
            services().devices.approve(device_id, actor=actor())
            approved.append(device_id)
        except FleetError as exc:
            refused.append(exc.message)
    if approved:
        flash(f"{len(approved)} device(s) approved: {', '.join(approved)}.")
    for message in refused:
        flash(f"Not approved: {message}.")
    return redirect(url_for("web.groups_show", name=name), 303)


@web.route("/groups/<name>/devices/<device_id>/reject", methods=["GET", "POST"])
@admin_required
def groups_device_reject(name: str, device_id: str) -> Any:
    device = _device_in(name, device_id)
    if device.status != PENDING:
        raise ConflictError(f"device {device_id!r} is {device.status}, not pending")
    if request.method == "GET":
        return confirm_page(
            title=f"Reject {device_id}",
            lines=[
                f"{device_id}, waiting for approval in group {name} since "
                f"{exact(device.enrolled_at)}, is rejected: it gets no credentials.",
                f"Its record, its registry token {device.token or '(none)'} (never enabled) "
                "and its broker login are deleted.",
                "It can enroll again only with a valid enrollment secret or one-time code, "
                "and then waits for approval again.",
            ],
            button="Reject",
            back=url_for("web.groups_show", name=name),
        )
    services().devices.reject(device_id, actor=actor())
    flash(f"{device_id} rejected: its record, token and broker login are deleted.")
    return redirect(url_for("web.groups_show", name=name), 303)
