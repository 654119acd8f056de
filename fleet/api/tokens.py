"""Token routes: the REST twin of ``az acr token ...``."""

from __future__ import annotations

from typing import Any

from fleet.api.auth import actor, services
from fleet.api.expiry import resolve_expiry
from fleet.api.paging import page_args, page_json
from fleet.api.rest import api
from fleet.api.schemas import (
    AccessEndOut,
    CredentialGenerate,
    CredentialsOut,
    TokenCreate,
    TokenList,
    TokenOut,
    TokenUpdate,
)
from fleet.api.serializers import access_end_json, credentials_json, health_json, token_json
from fleet.domain.rules import RepositoryActions

TAG = "tokens"


def _registry() -> str:
    return services().ctx.settings.registry_name


@api.operation(
    "/tokens", "GET", summary="List tokens, by name", tag=TAG, response=TokenList, paged=True
)
def list_tokens() -> Any:
    registry = _registry()
    return page_json(services().tokens.list(**page_args()), lambda t: token_json(registry, t))


@api.operation(
    "/tokens",
    "POST",
    summary="Create a token",
    tag=TAG,
    status=201,
    body=TokenCreate,
    response=TokenOut,
)
def create_token(body: TokenCreate) -> Any:
    svc = services()
    token = svc.tokens.create(
        body.name,
        scope_map=body.scope_map,
        repositories=[RepositoryActions(r.repository, tuple(r.actions)) for r in body.repositories],
        status=body.status,
        generate_passwords=not body.no_passwords,
        expiry=resolve_expiry(body, svc.ctx.clock()),
        actor=actor(),
    )
    return token_json(_registry(), token), 201


@api.operation("/tokens/<name>", "GET", summary="Show a token", tag=TAG, response=TokenOut)
def show_token(name: str) -> Any:
    svc = services()
    token = svc.tokens.show(name)
    return {**token_json(_registry(), token), "health": health_json(svc.health.for_token(name))}


@api.operation(
    "/tokens/<name>",
    "PATCH",
    summary="Change a token's scope map or status",
    tag=TAG,
    body=TokenUpdate,
    response=TokenOut,
)
def update_token(name: str, body: TokenUpdate) -> Any:
    extra = {"disable_at": body.disable_at} if "disable_at" in body.model_fields_set else {}
    token = services().tokens.update(
        name, scope_map=body.scope_map, status=body.status, actor=actor(), **extra
    )
    return token_json(_registry(), token)


@api.operation(
    "/tokens/<name>",
    "DELETE",
    summary="Delete a token; the answer says when JWTs issued before expire",
    tag=TAG,
    response=AccessEndOut,
)
def delete_token(name: str) -> Any:
    return access_end_json(services().tokens.delete(name, actor=actor()))


@api.operation(
    "/tokens/<name>/credentials/generate",
    "POST",
    summary="Generate new passwords (each value is shown in this answer only)",
    tag=TAG,
    body=CredentialGenerate,
    response=CredentialsOut,
)
def generate_credentials(name: str, body: CredentialGenerate) -> Any:
    svc = services()
    username, fresh = svc.tokens.generate_credentials(
        name, body.passwords, expiry=resolve_expiry(body, svc.ctx.clock()), actor=actor()
    )
    return credentials_json(username, fresh)


@api.operation(
    "/tokens/<name>/credentials/<slot>",
    "DELETE",
    summary="Delete one password of a token",
    tag=TAG,
    response=TokenOut,
)
def delete_credential(name: str, slot: str) -> Any:
    return token_json(_registry(), services().tokens.delete_credential(name, slot, actor=actor()))
