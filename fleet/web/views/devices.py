"""The Devices list (search, filters, sorts, keyset pages, bulk disable) and a device's page.

The list's filters live in the URL, so a view can be shared and reloaded; they become one
``DeviceQuery`` that the REST list uses too. Every action on a device takes two steps: its
button (a GET form) opens a page that says what will happen, and that page's button of the
same name posts it. Bulk disable posts twice, the second time with ``confirmed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from fleet.db.devices import ACTIVE, DEVICE_STATUSES, DISABLED
from fleet.domain.errors import FleetError, ValidationError
from fleet.http_errors import status_of
from fleet.registry_auth.tokens import REGISTRY_LEEWAY
from fleet.services.audit import AuditFilter
from fleet.services.device_list import DIRECTIONS, QUERY_PARAMETERS, parse_query
from fleet.services.devices import MAX_BULK
from fleet.services.paging import DEFAULT_LIMIT
from fleet.services.revocation import AccessEnd
from fleet.services.views import DeviceView
from fleet.web.blueprint import admin_required, web
from fleet.web.format import access_sentence, exact, is_whole
from fleet.web.session import services
from fleet.web.views.groups import actor

LIST_ARGS = (*QUERY_PARAMETERS, "limit")
MAX_ARG_CHARS = 64  # what is echoed back of a query parameter
MAX_REASON_CHARS = 256
MAX_DEVICE_ID_CHARS = 64
TIMELINE_PAGE = 25
MAX_EVENT_ID = 2**63 - 1
MAX_DIGITS = 19  # int() of a longer digit string is work (or an error) for nothing
SORT_LABELS = {
    "device_id": "Device id",
    "last_seen": "Last seen",
    "expiry": "Credential expiry",
    "enrolled": "Enrolled",
}


def _arg(args: MultiDict[str, str], name: str) -> str:
    return args.get(name, "").strip()


def _limit(args: MultiDict[str, str]) -> int:
    """Rows per page: at most a bulk action's worth, so a page can be disabled at once."""
    raw = _arg(args, "limit")
    if not raw:
        return DEFAULT_LIMIT
    if not is_whole(raw, MAX_DIGITS) or not 1 <= int(raw) <= MAX_BULK:
        raise ValidationError(
            f"'limit' is a whole number from 1 to {MAX_BULK}, not {raw[:20]!r}",
            code="InvalidLimit",
        )
    return int(raw)


def _kept(args: MultiDict[str, str]) -> dict[str, str]:
    """The filters as typed (bounded), for the form and the pager's links."""
    return {k: _arg(args, k)[:MAX_ARG_CHARS] for k in LIST_ARGS if _arg(args, k)}


@web.get("/devices")
def devices() -> Any:
    svc = services()
    kept = _kept(request.args)
    context: dict[str, Any] = {
        "filters": kept,
        "statuses": DEVICE_STATUSES,
        "sorts": SORT_LABELS,
        "directions": DIRECTIONS,
        "expiring_days": svc.ctx.settings.expiry_warning_days,
        "now": svc.ctx.clock(),
        "max_bulk": MAX_BULK,
        "error": None,
        "page": None,
        "first": "cursor" not in request.args,
    }
    try:
        query = parse_query(request.args)
        context["page"] = svc.devices.list(
            query, limit=_limit(request.args), cursor=_arg(request.args, "cursor") or None
        )
    except ValidationError as exc:
        context["error"] = exc.message
        return render_template("devices.html", **context), status_of(exc)
    return render_template("devices.html", **context)


def _timeline_before() -> int | None:
    raw = _arg(request.args, "before")
    if not raw:
        return None
    if not is_whole(raw, MAX_DIGITS) or not 1 <= int(raw) <= MAX_EVENT_ID:
        raise ValidationError("'before' is an event id (a whole number)", code="InvalidCursor")
    return int(raw)


def device_page(device_id: str, status: int = 200, **extra: Any) -> Any:
    svc = services()
    device = svc.devices.show(device_id[:MAX_DEVICE_ID_CHARS])
    targets = (device.device_id, device.token) if device.token else (device.device_id,)
    timeline = svc.audit.page(
        AuditFilter(targets=targets), before=_timeline_before(), limit=TIMELINE_PAGE
    )
    context = {
        "device": device,
        "timeline": timeline,
        "now": svc.ctx.clock(),
        "actions": [a for a in ACTIONS.values() if a.offered(device)],
        "reason": "",
        "reason_error": None,
        **extra,
    }
    return render_template("device.html", **context), status


@web.get("/devices/<device_id>")
def device(device_id: str) -> Any:
    return device_page(device_id)


# -- actions on one device --------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """One button of the device page, its confirmation and what it runs."""

    name: str  # in the URL
    button: str
    offered: Callable[[DeviceView], bool]
    lines: Callable[[DeviceView, str], list[str]]
    # What it did; the time its registry access ends, when it ended some (disable, delete).
    run: Callable[[DeviceView, str], AccessEnd | None]
    done: str  # the flash message, formatted with the device id
    needs_reason: bool = False


def _registry_cut(d: DeviceView | None = None) -> str:
    """What a disable or delete does to registry access; for one device, with its group's
    JWT lifetime."""
    lifetime = "its group's JWT lifetime"
    if d is not None:
        seconds = services().groups.show(d.group, with_secrets=False).jwt_lifetime_seconds
        lifetime = f"{seconds} s ({lifetime})"
    return (
        "the registry refuses it new tokens at once; a registry token already issued "
        f"lasts at most {lifetime} more, plus the registry's {REGISTRY_LEEWAY} s leeway: "
        "the exact time is shown once it is done"
    )


def _disable_lines(d: DeviceView, reason: str) -> list[str]:
    return [
        f"{d.device_id}: registry token {d.token or '(none)'} disabled: {_registry_cut(d)}.",
        f"Its broker login {d.mqtt_username} is disabled and it is told to wipe its "
        "credentials (a connected device gets a few seconds to read that first).",
        "Its registry passwords are deleted; Enable brings it back with a fresh one only.",
        f"Reason, kept in the audit log: {reason}",
    ]


def _enable_lines(d: DeviceView, _: str) -> list[str]:
    return [
        f"{d.device_id}: its registry token {d.token or '(none)'} and its broker login "
        f"{d.mqtt_username} work again.",
        "A fresh password is delivered to it in its other slot; the device uses it once "
        "it acknowledges it.",
    ]


def _rotate_lines(d: DeviceView, _: str) -> list[str]:
    slot = d.active_slot or "password1"
    other = "password2" if slot == "password1" else "password1"
    return [
        f"{d.device_id}: a new password is written to {other} and delivered to it now.",
        f"Its current password ({slot}) keeps working until the device acknowledges the new "
        "one, and at most until its own expiry"
        + (f" ({exact(d.active_expiry)})." if d.active_expiry else "."),
    ]


def _pull_lines(d: DeviceView, _: str) -> list[str]:
    return [
        f"{d.device_id} is told (a signed command over MQTT) to pull its configured images now.",
        "Its result shows on this page as its last pull once the device reports it.",
    ]


def _reenroll_lines(d: DeviceView, _: str) -> list[str]:
    return [
        f"{d.device_id} may enroll once more, with new keys, using a valid enrollment secret "
        "or one-time code of a group.",
        "Until then nothing changes; whoever enrolls as this id next takes it over, so allow "
        "it only when the device itself was reset or replaced.",
    ]


def _delete_lines(d: DeviceView, _: str) -> list[str]:
    return [
        f"{d.device_id} is deleted with its registry token {d.token or '(none)'} and its "
        f"broker login {d.mqtt_username}: {_registry_cut(d)}.",
        "Its deliveries are deleted; its audit events are kept.",
        "This cannot be undone: the device can come back only by enrolling again.",
    ]


def _svc_call(method: str) -> Callable[[DeviceView, str], AccessEnd | None]:
    def run(d: DeviceView, _: str) -> AccessEnd | None:
        done = getattr(services().devices, method)(d.device_id, actor=actor())
        return done if isinstance(done, AccessEnd) else None  # delete answers when

    return run


def _disable(d: DeviceView, reason: str) -> AccessEnd | None:
    return services().devices.disable(d.device_id, actor=actor(), reason=reason).access


ACTIONS = {
    a.name: a
    for a in (
        Action(
            "disable",
            "Disable",
            lambda d: d.status != DISABLED,
            _disable_lines,
            _disable,
            "{} disabled: its registry token and broker login are cut.",
            needs_reason=True,
        ),
        Action(
            "enable",
            "Enable",
            lambda d: d.status == DISABLED,
            _enable_lines,
            _svc_call("enable"),
            "{} enabled: a fresh password is on its way to it.",
        ),
        Action(
            "rotate",
            "Rotate now",
            lambda d: d.status == ACTIVE,
            _rotate_lines,
            _svc_call("rotate"),
            "{}: a new password is on its way to it.",
        ),
        Action(
            "pull",
            "Pull now",
            lambda d: d.status == ACTIVE,
            _pull_lines,
            _svc_call("pull"),
            "{} was told to pull now.",
        ),
        Action(
            "allow-reenroll",
            "Allow re-enroll",
            lambda d: not d.allow_reenroll,
            _reenroll_lines,
            _svc_call("allow_reenroll"),
            "{} may enroll once more.",
        ),
        Action(
            "delete",
            "Delete",
            lambda d: True,
            _delete_lines,
            _svc_call("delete"),
            "{} deleted, with its registry token and broker login.",
        ),
    )
}


def _reason(source: MultiDict[str, str]) -> str:
    return source.get("reason", "").strip()


@web.route("/devices/<device_id>/<action>", methods=["GET", "POST"])
@admin_required
def device_action(device_id: str, action: str) -> Any:
    todo = ACTIONS.get(action)
    if todo is None:
        abort(404, description=f"there is no device action {action[:32]!r}")
    view = services().devices.show(device_id[:MAX_DEVICE_ID_CHARS])
    source = request.args if request.method == "GET" else request.form
    reason = _reason(source)
    if todo.needs_reason:
        problem = None
        if not reason:
            problem = "Give a reason: it is kept in the audit log."
        elif len(reason) > MAX_REASON_CHARS:
            problem = f"A reason has at most {MAX_REASON_CHARS} characters."
        if problem:
            return device_page(
                view.device_id, 400, reason=reason[:MAX_REASON_CHARS], reason_error=problem
            )
    page = {
        "title": f"{todo.button} {view.device_id}",
        "lines": todo.lines(view, reason),
        "button": todo.button,
        "back": url_for("web.device", device_id=view.device_id),
        "hidden": [("reason", reason)] if todo.needs_reason else [],
    }
    if request.method == "GET":
        return render_template("confirm.html", **page)
    try:
        ended = todo.run(view, reason)
    except FleetError as exc:
        return render_template("confirm.html", **page, error=exc.message), status_of(exc)
    flash(todo.done.format(view.device_id) + (f" {access_sentence(ended)}" if ended else ""))
    if action == "delete":
        return redirect(url_for("web.devices"), 303)
    return redirect(url_for("web.device", device_id=view.device_id), 303)


# -- bulk disable -----------------------------------------------------------------------
@web.post("/devices/disable")
@admin_required
def devices_disable() -> Any:
    """Disable the devices ticked on a page of the list, after a second step naming them."""
    form = request.form
    chosen = list(dict.fromkeys(d[:MAX_DEVICE_ID_CHARS] for d in form.getlist("device")))
    reason = _reason(form)
    back = _back(form.get("back", ""))
    problem = None
    if not chosen:
        problem = "No device was selected: tick the devices to disable first."
    elif len(chosen) > MAX_BULK:
        problem = f"Disable at most {MAX_BULK} devices at once (a page of the list)."
    elif not reason:
        problem = "Give a reason: it is kept in the audit log."
    elif len(reason) > MAX_REASON_CHARS:
        problem = f"A reason has at most {MAX_REASON_CHARS} characters."
    if problem:
        return render_template("bulk_error.html", message=problem, back=back), 400
    if form.get("confirmed") != "1":
        lines = [
            f"{len(chosen)} device(s) are disabled: {', '.join(chosen)}.",
            f"For each, its registry token is disabled ({_registry_cut()}) and its passwords "
            "deleted, its broker login is disabled, and it is told to wipe its credentials.",
            "A device already disabled is left as it is; Enable brings one back.",
            f"Reason, kept in the audit log of each: {reason}",
        ]
        hidden = [("device", d) for d in chosen]
        hidden += [("reason", reason), ("back", back), ("confirmed", "1")]
        return render_template(
            "confirm.html",
            title=f"Disable {len(chosen)} device(s)",
            lines=lines,
            button="Disable",
            back=back,
            hidden=hidden,
        )
    results = services().devices.disable_many(chosen, actor=actor(), reason=reason)
    return render_template(
        "devices_disabled.html",
        results=results,
        reason=reason,
        back=back,
        now=services().ctx.clock(),
    )


def _back(target: str) -> str:
    """Where Cancel and the results lead: the list page the operator came from (a path of
    this server's device list, never another host), else the first page."""
    home = url_for("web.devices")
    path = target.split("?", 1)[0]
    if path == home and "\\" not in target and len(target) <= 2048:
        return target
    return home
