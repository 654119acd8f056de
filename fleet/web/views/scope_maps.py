"""Scope maps, as the reference's portal has them: the paged list (system-defined first), +Add
with a name, a description and repository permissions, a map's page with its rules and the
tokens using it, editing (add a repository with +Add, uncheck permissions to remove them,
then Save), and Delete. System-defined maps are shown read-only.

Saving sends the service the difference between the map as it is and the rows as posted, in
one update: every token using the map changes at once, and an invalid row changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from fleet.db.models import SYSTEM_DEFINED
from fleet.domain.errors import FleetError, ReadOnlyError, ValidationError
from fleet.http_errors import status_of
from fleet.services.views import ScopeMapView
from fleet.web.blueprint import admin_required, web
from fleet.web.session import services
from fleet.web.views.groups import actor, confirm_page
from fleet.web.views.listing import keyset_list
from fleet.web.views.rules_form import ACTIONS, ADD_ROW, RulesForm, as_rules

PAGE = 50
TOKENS_PAGE = 50
SHOWN_ON_DELETE = 20  # the first tokens named on the delete step, then how many more
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024


REVISION_CHARS = 16


def revision_of(scope_map: ScopeMapView) -> str:
    """A digest of what the form edits. A save made from an older one would silently undo
    what another operator saved meanwhile (the form sends the whole wanted set)."""
    text = json.dumps([scope_map.description, sorted(scope_map.entries)])
    return hashlib.sha256(text.encode()).hexdigest()[:REVISION_CHARS]


@dataclass
class MapForm:
    name: str
    description: str
    rules: RulesForm
    errors: dict[str, str] = field(default_factory=dict)
    general: str | None = None
    revision: str = ""  # of the map as the form was made from it (see revision_of)

    @classmethod
    def read(cls) -> MapForm:
        form = request.form
        return cls(
            form.get("name", "").strip()[:MAX_NAME_CHARS],
            form.get("description", "").strip()[: MAX_DESCRIPTION_CHARS + 1],
            RulesForm.read(form),
            revision=form.get("revision", "")[:REVISION_CHARS],
        )

    @classmethod
    def of(cls, scope_map: ScopeMapView) -> MapForm:
        return cls(
            scope_map.name,
            scope_map.description,
            RulesForm.of(scope_map.entries),
            revision=revision_of(scope_map),
        )

    def entries_or_none(self) -> set[tuple[str, str]] | None:
        """What the rows grant, or None when a row is wrong (each wrong row says why)."""
        self.rules.rules(unchecked_removes=True)
        return None if self.rules.errors else self.rules.entries(unchecked_removes=True)

    def fail(self, exc: FleetError) -> None:
        if exc.code in ("InvalidName", "ReservedName", "ScopeMapExists"):
            self.errors["name"] = exc.message
        elif "description" in exc.message and exc.code == "InvalidRequest":
            self.errors["description"] = exc.message
        elif not (isinstance(exc, ValidationError) and self.rules.fail(exc)):
            self.general = exc.message


@web.get("/scope-maps")
def scope_maps() -> Any:
    return keyset_list("scope_maps.html", services().scope_maps.list, PAGE)


def _new_page(form: MapForm, status: int = 200) -> Any:
    return render_template("scope_map_new.html", form=form, actions=ACTIONS), status


@web.get("/scope-maps/new")
@admin_required
def scope_maps_new() -> Any:
    return _new_page(MapForm("", "", RulesForm.blank()))


@web.post("/scope-maps/new")
@admin_required
def scope_maps_create() -> Any:
    form = MapForm.read()
    rules = form.rules.rules()
    if ADD_ROW in request.form:
        form.rules.with_row_added()
        return _new_page(form)
    if not form.name:
        form.errors["name"] = "A name is required"
    if not rules and not form.rules.errors:
        form.rules.rows[0].error = "add at least one repository with its permissions"
    if form.errors or form.rules.errors:
        return _new_page(form, 400)
    try:
        services().scope_maps.create(form.name, rules, form.description, actor=actor())
    except FleetError as exc:
        form.fail(exc)
        return _new_page(form, status_of(exc))
    flash(f"Scope map {form.name} created.")
    return redirect(url_for("web.scope_maps_show", name=form.name), 303)


def map_page(name: str, status: int = 200, form: MapForm | None = None) -> Any:
    svc = services()
    scope_map = svc.scope_maps.show(name)
    using = svc.scope_maps.tokens_using(
        name, limit=TOKENS_PAGE, cursor=request.args.get("tokens_cursor") or None
    )
    return render_template(
        "scope_map.html",
        scope_map=scope_map,
        system=scope_map.type == SYSTEM_DEFINED,
        form=form or MapForm.of(scope_map),
        actions=ACTIONS,
        using=using,
        now=svc.ctx.clock(),
    ), status


@web.get("/scope-maps/<name>")
def scope_maps_show(name: str) -> Any:
    return map_page(name)


@web.post("/scope-maps/<name>")
@admin_required
def scope_maps_update(name: str) -> Any:
    current = services().scope_maps.show(name)
    form = MapForm.read()
    form.name = current.name
    wanted = form.entries_or_none()
    if ADD_ROW in request.form:
        form.rules.with_row_added()
        return map_page(name, 200, form)
    if wanted is None:
        return map_page(name, 400, form)
    if current.type != SYSTEM_DEFINED and form.revision != revision_of(current):
        fresh = MapForm.of(current)
        fresh.general = (
            f"Scope map {name} was changed by someone else since you opened it, so nothing was "
            "saved. Here it is as it is now: make your change again and save."
        )
        return map_page(name, 409, fresh)
    have = set(current.entries)
    description = form.description if form.description != current.description else None
    if wanted == have and description is None:
        flash("Nothing changed.")
        return redirect(url_for("web.scope_maps_show", name=name), 303)
    try:
        services().scope_maps.update(
            name,
            add=as_rules(sorted(wanted - have)),
            remove=as_rules(sorted(have - wanted)),
            description=description,
            actor=actor(),
        )
    except ReadOnlyError:
        raise  # a system-defined map's page has no form to show it on: an error page
    except FleetError as exc:
        form.fail(exc)
        return map_page(name, status_of(exc), form)
    flash(f"Scope map {name} saved: every token using it has the new permissions now.")
    return redirect(url_for("web.scope_maps_show", name=name), 303)


def _delete_lines(name: str) -> list[str]:
    using = services().scope_maps.tokens_using(name, limit=SHOWN_ON_DELETE)
    lines = [f"Scope map {name} and its rules are deleted."]
    if using.items:
        more = " and more" if using.next_cursor else ""
        lines.append(
            f"Tokens that use it are left with no permissions: {', '.join(using.items)}{more}. "
            "Give them another scope map to let them in again."
        )
    else:
        lines.append("No token uses it.")
    lines.append("This cannot be undone.")
    return lines


@web.route("/scope-maps/<name>/delete", methods=["GET", "POST"])
@admin_required
def scope_maps_delete(name: str) -> Any:
    page = {
        "title": f"Delete scope map {name}",
        "lines": _delete_lines(name),
        "button": "Delete",
        "back": url_for("web.scope_maps_show", name=name),
    }
    if request.method == "GET":
        return confirm_page(**page)
    try:
        left = services().scope_maps.delete(name, actor=actor())
    except FleetError as exc:
        return confirm_page(**page, error=exc.message), status_of(exc)
    flash(
        f"Scope map {name} deleted"
        + (f"; {len(left)} token(s) are left with no permissions." if left else ".")
    )
    return redirect(url_for("web.scope_maps"), 303)
