"""``GET /access``: the access explainer, the REST twin of ``fleet token check-access``.

Asks nothing of the registry and changes nothing: it answers what the token endpoint would
grant a token (or any token of a scope map) on one repository and action, and why.
"""

from __future__ import annotations

from typing import Any

from flask import request

from fleet.api.auth import services
from fleet.api.rest import api
from fleet.api.schemas import AccessOut
from fleet.api.serializers import access_json
from fleet.domain.actions import Action
from fleet.domain.errors import ValidationError
from fleet.domain.names import MAX_REPOSITORY_LENGTH
from fleet.services.access import MAX_NAME_CHARS

TAG = "access"
PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "token",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": MAX_NAME_CHARS},
        "description": "A token's name: its scope map, status and passwords count. "
        "Give token or scopeMap, not both (else 400 InvalidRequest); unknown: 404",
    },
    {
        "name": "scopeMap",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": MAX_NAME_CHARS},
        "description": "A scope map's name, explained on its own (any enabled token using it)",
    },
    {
        "name": "repository",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "maxLength": MAX_REPOSITORY_LENGTH},
        "description": "A repository name (not a pattern); invalid: 400 InvalidRepositoryName",
    },
    {
        "name": "action",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": [a.value for a in Action]},
        "description": "The action asked about; another value: 400 InvalidAction",
    },
]


def _required(name: str) -> str:
    value = request.args.get(name, "")
    if not value:
        raise ValidationError(f"the query parameter {name!r} is required", code="InvalidRequest")
    return value


@api.operation(
    "/access",
    "GET",
    summary="Explain access: the decision on a repository and action, and every matching rule",
    tag=TAG,
    response=AccessOut,
    parameters=PARAMETERS,
)
def explain_access() -> Any:
    view = services().access.explain(
        token=request.args.get("token") or None,
        scope_map=request.args.get("scopeMap") or None,
        repository=_required("repository"),
        action=_required("action"),
    )
    return access_json(view)
