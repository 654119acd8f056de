"""Tokens, as the reference's portal has them: the paged list, +Add (on an existing scope map
or on one made on the spot from repositories and permissions), a token's page (its passwords
with their expiry, status, last use, failed logins and its map's rules), its status and scope
map, Generate for password1 or password2, and Delete.

A generated password is shown in the answer to the POST that made it and nowhere else (every
dashboard page is ``Cache-Control: no-store``). A device's token is shown like any other, but
it is changed through its device: the service refuses a new scope map or a deletion, and the
dashboard refuses the rest (status, passwords), which would bypass the device's rotation,
its broker login and its wipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from fleet.db.models import DISABLED, ENABLED, SLOTS
from fleet.domain.errors import ConflictError, FleetError, NotFoundError, ValidationError
from fleet.http_errors import status_of
from fleet.services.views import ScopeMapView, TokenView
from fleet.web.blueprint import admin_required, web
from fleet.web.format import access_sentence
from fleet.web.session import services
from fleet.web.views.enrollment import _expiry as parse_expiry
from fleet.web.views.groups import actor, confirm_page, is_admin
from fleet.web.views.listing import keyset_list
from fleet.web.views.rules_form import ACTIONS, ADD_ROW, RulesForm

PAGE = 50
MAP_CHOICES = 100  # the first maps offered in the scope-map field's list; any name is accepted
MAX_FIELD_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
FIELD_OF_CODE = {
    "InvalidName": "name",
    "ReservedName": "name",
    "TokenExists": "name",
    "ScopeMapNotFound": "scope_map",
    "ScopeMapExists": "map_name",
    "LimitExceeded": "general",
}


@dataclass
class TokenForm:
    """The new-token form as typed, with errors by field."""

    values: dict[str, str]
    rules: RulesForm
    errors: dict[str, str] = field(default_factory=dict)
    general: str | None = None

    @classmethod
    def blank(cls) -> TokenForm:
        values = {"name": "", "map_choice": "existing", "scope_map": "", "map_name": ""}
        return cls({**values, "map_description": "", "status": ENABLED}, RulesForm.blank())

    @classmethod
    def read(cls) -> TokenForm:
        form = request.form
        values = {
            n: form.get(n, "").strip()[:MAX_FIELD_CHARS]
            for n in ("name", "map_choice", "scope_map", "map_name", "status")
        }
        values["map_description"] = form.get("map_description", "").strip()[
            : MAX_DESCRIPTION_CHARS + 1
        ]
        return cls(values, RulesForm.read(form))

    def fail(self, exc: FleetError) -> None:
        target = FIELD_OF_CODE.get(exc.code)
        if exc.code == "InvalidName" and "scope map" in exc.message:
            target = "map_name"
        if exc.code == "ReservedName" and "scope map" in exc.message:
            target = "map_name"
        if exc.code == "InvalidRequest" and "description" in exc.message:
            target = "map_description"
        if exc.code == "InvalidRule" and isinstance(exc, ValidationError) and self.rules.fail(exc):
            return
        if target and target in self.values:
            self.errors[target] = exc.message
        else:
            self.general = exc.message


def map_choices() -> list[str]:
    return services().scope_maps.names(limit=MAP_CHOICES)


@web.get("/tokens")
def tokens() -> Any:
    return keyset_list("tokens.html", services().tokens.list, PAGE)


def _new_page(form: TokenForm, status: int = 200) -> Any:
    page = render_template("token_new.html", form=form, maps=map_choices(), actions=ACTIONS)
    return page, status


@web.get("/tokens/new")
@admin_required
def tokens_new() -> Any:
    return _new_page(TokenForm.blank())


def _check(form: TokenForm) -> dict[str, Any] | None:
    """The service's arguments from the form, or None when a field is wrong."""
    values = form.values
    if not values["name"]:
        form.errors["name"] = "A name is required"
    if values["status"] not in (ENABLED, DISABLED):
        form.errors["status"] = "choose Enabled or Disabled"
    arguments: dict[str, Any] = {"status": values["status"], "generate_passwords": False}
    if values["map_choice"] == "existing":
        if not values["scope_map"]:
            form.errors["scope_map"] = "choose a scope map, or create a new one"
        arguments["scope_map"] = values["scope_map"]
    elif values["map_choice"] == "new":
        rules = form.rules.rules()
        if not rules and not form.rules.errors:
            form.rules.rows[0].error = "add at least one repository with its permissions"
        arguments["repositories"] = rules
        arguments["new_map_name"] = values["map_name"] or None
        arguments["new_map_description"] = values["map_description"] or None
    else:
        form.errors["map_choice"] = "choose an existing scope map or create a new one"
    return None if form.errors or form.rules.errors else arguments


@web.post("/tokens/new")
@admin_required
def tokens_create() -> Any:
    form = TokenForm.read()
    if ADD_ROW in request.form:
        form.values["map_choice"] = "new"
        form.rules.rules()  # show what is wrong so far
        form.rules.with_row_added()
        return _new_page(form)
    arguments = _check(form)
    if arguments is None:
        return _new_page(form, 400)
    name = form.values["name"]
    try:
        made = services().tokens.create(name, actor=actor(), **arguments)
    except FleetError as exc:
        form.fail(exc)
        return _new_page(form, status_of(exc))
    flash(f"Token {name} created on scope map {made.scope_map}: generate a password to use it.")
    return redirect(url_for("web.tokens_show", name=name), 303)


@dataclass
class MapField:
    value: str = ""
    error: str | None = None


def token_page(name: str, status: int = 200, **extra: Any) -> Any:
    """A token's page; ``extra`` carries a form on error or a password shown this once."""
    svc = services()
    token = svc.tokens.show(name)
    scope_map: ScopeMapView | None = None
    if token.scope_map:
        try:
            scope_map = svc.scope_maps.show(token.scope_map)
        except NotFoundError:  # deleted between the two reads
            scope_map = None
    context: dict[str, Any] = {
        "token": token,
        "slots": {p.name: p for p in token.passwords},
        "slot_names": SLOTS,
        "health": svc.health.for_token(name),
        "device": svc.tokens.device_of(name),
        "scope_map": scope_map,
        "maps": map_choices() if is_admin() else [],
        "map_field": MapField(token.scope_map or ""),
        "now": svc.ctx.clock(),
        "created": None,
        **extra,
    }
    return render_template("token.html", **context), status


@web.get("/tokens/<name>")
def tokens_show(name: str) -> Any:
    return token_page(name)


DEVICE_WAY = {
    "enable": "enable it as a device (fleet device enable --name {device}), which also opens "
    "its broker login and delivers it a fresh password",
    "disable": "disable it as a device (fleet device disable --name {device}), which also cuts "
    "its broker login and wipes its credentials",
    "generate": "its passwords are rotated and delivered by the server "
    "(fleet device rotate --name {device})",
}


def _not_a_device_token(name: str, what: str) -> TokenView:
    """The token, unless a device owns it: then the change is refused and pointed there."""
    token = services().tokens.show(name)
    device = services().tokens.device_of(name)
    if device is not None:
        raise ConflictError(
            f"token {name!r} belongs to device {device!r}: "
            + DEVICE_WAY[what].format(device=device),
            code="DeviceToken",
        )
    return token


@web.post("/tokens/<name>/scope-map")
@admin_required
def tokens_scope_map(name: str) -> Any:
    chosen = request.form.get("scope_map", "").strip()[:MAX_FIELD_CHARS]
    if not chosen:
        return token_page(name, 400, map_field=MapField(chosen, "A scope map is required"))
    current = services().tokens.show(name)
    if chosen == current.scope_map:
        flash("Nothing changed.")
        return redirect(url_for("web.tokens_show", name=name), 303)
    try:
        services().tokens.update(name, scope_map=chosen, actor=actor())
    except FleetError as exc:
        if exc.code == "DeviceToken":
            raise  # the page shows no scope-map field for a device's token: an error page
        return token_page(name, status_of(exc), map_field=MapField(chosen, exc.message))
    flash(f"Token {name} now uses scope map {chosen}.")
    return redirect(url_for("web.tokens_show", name=name), 303)


@web.post("/tokens/<name>/enable")
@admin_required
def tokens_enable(name: str) -> Any:
    token = _not_a_device_token(name, "enable")
    if token.status != ENABLED:
        services().tokens.update(name, status=ENABLED, actor=actor())
    flash(f"Token {name} is enabled: its passwords work again.")
    return redirect(url_for("web.tokens_show", name=name), 303)


@web.route("/tokens/<name>/disable", methods=["GET", "POST"])
@admin_required
def tokens_disable(name: str) -> Any:
    token = _not_a_device_token(name, "disable")
    if request.method == "GET":
        lifetime = services().ctx.settings.token_lifetime
        return confirm_page(
            title=f"Disable token {name}",
            lines=[
                f"Token {name} is disabled: the registry refuses new logins with its "
                "passwords at once.",
                f"A registry token issued just before lives at most {lifetime} s more "
                "(plus the registry's 60 s leeway): the exact time is shown once it is done.",
                "Its passwords are kept: Enable makes them work again.",
            ],
            button="Disable",
            back=url_for("web.tokens_show", name=name),
        )
    ended = token.access
    if token.status != DISABLED:
        ended = services().tokens.update(name, status=DISABLED, actor=actor()).access
    flash(f"Token {name} is disabled." + (f" {access_sentence(ended)}" if ended else ""))
    return redirect(url_for("web.tokens_show", name=name), 303)


def _generate_page(
    token: TokenView, slot: str, raw_expiry: str = "", error: str | None = None
) -> str:
    existing = {p.name: p for p in token.passwords}.get(slot)
    return render_template(
        "token_generate.html", token=token, slot=slot, existing=existing,
        expires_at=raw_expiry, error=error, now=services().ctx.clock(),
    )  # fmt: skip


@web.route("/tokens/<name>/passwords/<slot>", methods=["GET", "POST"])
@admin_required
def tokens_generate(name: str, slot: str) -> Any:
    if slot not in SLOTS:
        raise NotFoundError(f"a token has password1 and password2, not {slot[:20]!r}")
    token = _not_a_device_token(name, "generate")
    if request.method == "GET":
        return _generate_page(token, slot)
    raw_expiry = request.form.get("expires_at", "")[:32]
    try:
        _, fresh = services().tokens.generate_credentials(
            name, [slot], expiry=parse_expiry(raw_expiry), actor=actor()
        )
    except FleetError as exc:
        return _generate_page(token, slot, raw_expiry, exc.message), status_of(exc)
    return token_page(name, 201, created=fresh[0])


@web.route("/tokens/<name>/delete", methods=["GET", "POST"])
@admin_required
def tokens_delete(name: str) -> Any:
    services().tokens.show(name)
    page = {
        "title": f"Delete token {name}",
        "lines": [
            f"Token {name} and its passwords are deleted: no one can log in to the registry "
            "with them any more.",
            "Its scope map is kept.",
            "This cannot be undone.",
        ],
        "button": "Delete",
        "back": url_for("web.tokens_show", name=name),
    }
    if request.method == "GET":
        return confirm_page(**page)
    try:
        ended = services().tokens.delete(name, actor=actor())
    except FleetError as exc:
        return confirm_page(**page, error=exc.message), status_of(exc)
    flash(f"Token {name} deleted." + (f" {access_sentence(ended)}" if ended else ""))
    return redirect(url_for("web.tokens"), 303)
