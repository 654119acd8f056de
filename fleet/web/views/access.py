"""The access explainer: a token or a scope map, a repository and an action, and the answer
the token endpoint would give, with every rule that matched and why when denied.

A GET form (it changes nothing, and the URL can be shared); readable by viewers. The name is a
text input, not a list: a registry may hold 100,000 tokens. Errors of the service are shown
next to the field they concern and the form keeps what was typed.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from fleet.domain.actions import Action
from fleet.domain.errors import FleetError
from fleet.domain.names import MAX_REPOSITORY_LENGTH
from fleet.http_errors import status_of
from fleet.services.access import MAX_NAME_CHARS
from fleet.services.views import AccessView
from fleet.web.blueprint import web
from fleet.web.session import services

KINDS = {"token": "token", "scope_map": "scope map"}
ACTIONS = [a.value for a in Action]
FIELD_OF_CODE = {
    "TokenNotFound": "name",
    "ScopeMapNotFound": "name",
    "InvalidName": "name",
    "InvalidRepositoryName": "repository",
    "InvalidAction": "action",
}
# Longer input is cut one past the service's bound, so the service still says it is too long.
MAX_CHARS = {"name": MAX_NAME_CHARS + 1, "repository": MAX_REPOSITORY_LENGTH + 1, "action": 32}


@web.get("/access")
def access() -> Any:
    args = request.args
    values = {
        "kind": args.get("kind", "token"),
        "name": args.get("name", "").strip()[: MAX_CHARS["name"]],
        "repository": args.get("repository", "").strip()[: MAX_CHARS["repository"]],
        "action": args.get("action", Action.CONTENT_READ.value)[: MAX_CHARS["action"]],
    }
    errors: dict[str, str] = {}
    result: AccessView | None = None
    status = 200
    asked = any(k in args for k in ("name", "repository"))
    if asked:
        if values["kind"] not in KINDS:
            errors["kind"] = "Choose a token or a scope map"
        if not values["name"]:
            errors["name"] = f"A {KINDS.get(values['kind'], 'token')} name is required"
        if not values["repository"]:
            errors["repository"] = "A repository name is required"
        if errors:
            status = 400
        else:
            try:
                result = services().access.explain(
                    repository=values["repository"],
                    action=values["action"],
                    **{values["kind"]: values["name"]},
                )
            except FleetError as exc:
                errors[FIELD_OF_CODE.get(exc.code, "name")] = exc.message
                status = status_of(exc)
    context = {
        "values": values,
        "errors": errors,
        "form": {"errors": errors},  # what the shared field macros read
        "result": result,
        "kinds": KINDS,
        "actions": ACTIONS,
        "max_chars": MAX_CHARS,
        "now": services().ctx.clock(),
    }
    return render_template("access.html", **context), status
