"""Device groups: the table of groups, a new group, and a group's settings and deletion.

A group's enrollment secrets and its approval queue are in ``enrollment.py``. Errors of the
service are shown next to the field they concern (``FIELD_OF_CODE``); bad input changes
nothing and the form keeps what was typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from fleet.domain.errors import FleetError
from fleet.http_errors import status_of
from fleet.registry_auth.tokens import DEFAULT_DEVICE_TOKEN_LIFETIME
from fleet.services.views import GroupView
from fleet.web.blueprint import admin_required, web
from fleet.web.format import is_whole
from fleet.web.session import current_operator, services

FIELD_OF_CODE = {
    "InvalidName": "name",
    "ReservedName": "name",
    "GroupExists": "name",
    "ScopeMapNotFound": "scope_map",
    "ScopeMapNotReadOnly": "scope_map",
    "InvalidPasswordLifetime": "password_lifetime_days",
    "InvalidRotationWindow": "rotation_window_days",
    "InvalidInactivityLimit": "inactivity_limit_days",
    "InvalidJwtLifetime": "jwt_lifetime_seconds",
}
DAYS_FIELDS = {
    "password_lifetime_days": "The password lifetime",
    "rotation_window_days": "The rotation window",
    "inactivity_limit_days": "The inactivity limit",
}
SECONDS_FIELDS = {"jwt_lifetime_seconds": "The registry JWT lifetime"}
REQUIRED = {"name": "A name", "scope_map": "A scope map"}
SETTINGS = ("scope_map", *DAYS_FIELDS, *SECONDS_FIELDS, "require_approval")
MAX_FIELD_CHARS = 64
SECRETS_PAGE = 50  # a group may have issued a code per device: its page shows them in pages
MAX_DAYS_DIGITS = 6  # the service checks the range; this keeps junk out of int()


@dataclass
class GroupForm:
    """What the operator typed (kept on error), the parsed values, and errors by field."""

    values: dict[str, str]
    parsed: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    general: str | None = None

    @classmethod
    def read(cls, form: Mapping[str, str], *, with_name: bool) -> GroupForm:
        names = ("name", *SETTINGS) if with_name else SETTINGS
        values = {n: form.get(n, "").strip()[:MAX_FIELD_CHARS] for n in names}
        values["require_approval"] = "on" if form.get("require_approval") else ""
        self = cls(values)
        for name in names:
            raw = values[name]
            if name in DAYS_FIELDS:
                self._days(name, raw)
            elif name in SECONDS_FIELDS:
                if not raw:
                    pass  # left out: the default, or unchanged
                elif is_whole(raw, MAX_DAYS_DIGITS):
                    self.parsed[name] = int(raw)
                else:
                    self.errors[name] = f"{SECONDS_FIELDS[name]} is a whole number of seconds"
            elif name == "require_approval":
                self.parsed[name] = bool(raw)
            elif not raw:
                self.errors[name] = f"{REQUIRED[name]} is required"
            else:
                self.parsed[name] = raw
        return self

    def _days(self, name: str, raw: str) -> None:
        if not raw and name == "inactivity_limit_days":
            self.parsed[name] = None  # no limit
        elif is_whole(raw, MAX_DAYS_DIGITS):
            self.parsed[name] = int(raw)
        else:
            self.errors[name] = f"{DAYS_FIELDS[name]} is a whole number of days"
            if name == "inactivity_limit_days":
                self.errors[name] += " (empty for no limit)"

    def fail(self, exc: FleetError) -> None:
        target = FIELD_OF_CODE.get(exc.code)
        if target is not None and target in self.values:
            self.errors[target] = exc.message
        else:
            self.general = exc.message

    @classmethod
    def of(cls, group: GroupView) -> GroupForm:
        inactivity = group.inactivity_limit_days
        return cls(
            {
                "scope_map": group.scope_map or "",
                "password_lifetime_days": str(group.password_lifetime_days),
                "rotation_window_days": str(group.rotation_window_days),
                "inactivity_limit_days": "" if inactivity is None else str(inactivity),
                "jwt_lifetime_seconds": str(group.jwt_lifetime_seconds),
                "require_approval": "on" if group.require_approval else "",
            }
        )


def actor() -> str:
    operator = current_operator()
    if operator is None:  # the blueprint's guard lets no one signed out this far
        raise RuntimeError("no operator is signed in")
    return f"operator:{operator.name}"


def is_admin() -> bool:
    operator = current_operator()
    return operator is not None and operator.is_admin


@web.get("/groups")
def groups() -> Any:
    return render_template("groups.html", groups=services().groups.summaries())


def _new_page(form: GroupForm, status: int = 200) -> Any:
    maps = services().groups.read_only_maps()
    return render_template("group_new.html", form=form, maps=maps), status


@web.get("/groups/new")
@admin_required
def groups_new() -> Any:
    defaults = {
        "password_lifetime_days": "30",
        "rotation_window_days": "7",
        "jwt_lifetime_seconds": str(DEFAULT_DEVICE_TOKEN_LIFETIME),
    }
    return _new_page(GroupForm({**dict.fromkeys(("name", *SETTINGS), ""), **defaults}))


@web.post("/groups/new")
@admin_required
def groups_create() -> Any:
    form = GroupForm.read(request.form, with_name=True)
    if form.errors:
        return _new_page(form, 400)
    fields = dict(form.parsed)
    name = fields.pop("name")
    try:
        services().groups.create(name, actor=actor(), **fields)
    except FleetError as exc:
        form.fail(exc)
        return _new_page(form, status_of(exc))
    flash(f"Group {name} created.")
    return redirect(url_for("web.groups_show", name=name), 303)


def group_page(name: str, status: int = 200, **extra: Any) -> Any:
    """A group's page; ``extra`` carries a form on error or a secret shown this once."""
    svc = services()
    group = svc.groups.show(name, with_secrets=False)
    context: dict[str, Any] = {
        "group": group,
        "secrets": svc.groups.secrets(
            name, limit=SECRETS_PAGE, cursor=request.args.get("secrets_cursor") or None
        ),
        "queue": svc.devices.approval_queue(name),
        "now": svc.ctx.clock(),
        "settings": GroupForm.of(group),
        "maps": svc.groups.read_only_maps() if is_admin() else [],
        "secret_form": {"kind": "code", "expires_at": ""},
        "secret_error": None,
        **extra,
    }
    return render_template("group.html", **context), status


@web.get("/groups/<name>")
def groups_show(name: str) -> Any:
    return group_page(name)


@web.post("/groups/<name>")
@admin_required
def groups_update(name: str) -> Any:
    form = GroupForm.read(request.form, with_name=False)
    if form.errors:
        return group_page(name, 400, settings=form)
    current = GroupForm.of(services().groups.show(name, with_secrets=False))
    changes = {k: v for k, v in form.parsed.items() if form.values[k] != current.values[k]}
    if not changes:
        flash("Nothing changed.")
        return redirect(url_for("web.groups_show", name=name), 303)
    try:
        services().groups.update(name, actor=actor(), **changes)
    except FleetError as exc:
        form.fail(exc)
        return group_page(name, status_of(exc), settings=form)
    flash(f"Settings of {name} saved.")
    return redirect(url_for("web.groups_show", name=name), 303)


def confirm_page(
    *, title: str, lines: list[str], button: str, back: str, error: str | None = None
) -> str:
    """The second step of a destructive action: what will happen, and the same button."""
    return render_template(
        "confirm.html", title=title, lines=lines, button=button, back=back, error=error
    )


def _delete_lines(group: GroupView) -> list[str]:
    lines = [
        f"Group {group.name} is deleted, with its settings and all its enrollment secrets "
        "and one-time codes: none of them can enroll a device any more.",
        f"The scope map {group.scope_map} is kept.",
    ]
    if group.devices:
        lines.append(
            f"It still has {group.devices} device(s): the server refuses to delete a group "
            "that has devices. Delete or reject them first."
        )
    return lines


@web.route("/groups/<name>/delete", methods=["GET", "POST"])
@admin_required
def groups_delete(name: str) -> Any:
    group = services().groups.show(name, with_secrets=False)
    page = {
        "title": f"Delete group {name}",
        "lines": _delete_lines(group),
        "button": "Delete",
        "back": url_for("web.groups_show", name=name),
    }
    if request.method == "GET":
        return confirm_page(**page)
    try:
        services().groups.delete(name, actor=actor())
    except FleetError as exc:
        return confirm_page(**page, error=exc.message), status_of(exc)
    flash(f"Group {name} deleted.")
    return redirect(url_for("web.groups"), 303)
