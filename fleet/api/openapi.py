"""A tiny route registry that validates request bodies and builds the OpenAPI document.

Every operation is declared once with its body and response models; the same declaration
serves validation at run time and the document at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fleet.domain.errors import ValidationError
from fleet.services.paging import DEFAULT_LIMIT, MAX_LIMIT

Handler = Callable[..., Any]
PAGE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_LIMIT,
            "default": DEFAULT_LIMIT,
        },
        "description": "Rows per page; out of range: 400 InvalidLimit",
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "The previous page's nextCursor, unchanged (none: the first page); "
        "a cursor not made by this list: 400 InvalidCursor",
    },
]
_PATH_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
# Answered by gunicorn in front of the API, not by it: the one answer that is not JSON.
URI_TOO_LONG: dict[str, Any] = {
    "description": "The request line (path and query) is longer than the HTTP server accepts "
    "(gunicorn's limit_request_line, 4094 bytes by default); answered by gunicorn, as HTML",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


@dataclass
class Operation:
    rule: str
    method: str
    summary: str
    tag: str
    status: int
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    query: dict[str, str]
    auth: bool
    paged: bool = False
    # Query parameters documented in full (required, bounds, choices), as OpenAPI spells them.
    parameters: list[dict[str, Any]] = field(default_factory=list)


def _describe(exc: PydanticValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@dataclass
class Api:
    blueprint: Blueprint
    title: str
    version: str
    operations: list[Operation] = field(default_factory=list)

    def operation(
        self,
        rule: str,
        method: str,
        *,
        summary: str,
        tag: str,
        status: int = 200,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        query: dict[str, str] | None = None,
        auth: bool = True,
        paged: bool = False,
        parameters: list[dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare a route; ``paged`` adds the ``limit`` and ``cursor`` query parameters."""
        op = Operation(
            rule,
            method.upper(),
            summary,
            tag,
            status,
            body,
            response,
            query or {},
            auth,
            paged,
            list(parameters or []),
        )
        self.operations.append(op)

        def decorator(fn: Handler) -> Handler:
            @wraps(fn)
            def view(**kwargs: Any) -> Any:
                if body is not None:
                    payload = request.get_json(silent=True)
                    if payload is None:
                        raise ValidationError("the request body must be a JSON object")
                    try:
                        kwargs["body"] = body.model_validate(payload)
                    except PydanticValidationError as exc:
                        raise ValidationError(_describe(exc)) from None
                return fn(**kwargs)

            endpoint = f"{fn.__name__}_{method.lower()}"
            self.blueprint.add_url_rule(rule, endpoint, view, methods=[method.upper()])
            return fn

        return decorator

    def document(self, prefix: str) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}

        def ref(model: type[BaseModel]) -> dict[str, str]:
            schema = model.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            return {"$ref": f"#/components/schemas/{model.__name__}"}

        for op in self.operations:
            path = prefix + _PATH_PARAM.sub(r"{\1}", op.rule)
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _PATH_PARAM.findall(op.rule)
            ] + [
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": text,
                }
                for name, text in op.query.items()
            ]
            params += op.parameters
            if op.paged:
                params += PAGE_PARAMETERS
            responses: dict[str, Any] = {
                str(op.status): {"description": "Success"}
                | (
                    {"content": {"application/json": {"schema": ref(op.response)}}}
                    if op.response
                    else {}
                ),
                "414": URI_TOO_LONG,
                "default": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            }
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "operationId": f"{op.method.lower()}_{op.tag}_{len(paths.get(path, {}))}"
                + re.sub(r"\W+", "_", op.rule),
                "parameters": params,
                "responses": responses,
            }
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(op.body)}},
                }
            if op.auth:
                entry["security"] = [{"apiKey": []}]
            paths.setdefault(path, {})[op.method.lower()] = entry
        schemas["Error"] = {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        }
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            },
        }
