"""Device groups, devices and enrollment."""

from __future__ import annotations

import functools
from dataclasses import asdict, fields
from typing import Any

from flask import request
from pydantic import Field
from pydantic.alias_generators import to_camel

from fleet.api.auth import actor, services
from fleet.api.device_schemas import (
    DeviceList,
    DeviceOut,
    EnrollRequest,
    EnrollResponse,
    GroupCreate,
    GroupList,
    GroupOut,
    GroupUpdate,
    SecretCreate,
    SecretList,
    SecretOut,
)
from fleet.api.expiry import resolve_expiry
from fleet.api.paging import page_args, page_json
from fleet.api.rest import api
from fleet.api.schemas import AccessEndOut, ApiModel
from fleet.api.serializers import access_end_json
from fleet.domain.names import device_token_name
from fleet.mqtt import topics
from fleet.services.device_list import parse_query
from fleet.services.views import DeviceView, GroupView, SecretView

GROUPS, DEVICES = "groups", "devices"


@functools.lru_cache(maxsize=256)  # the keys are field names: a few dozen
def _camel_key(name: str) -> str:
    return to_camel(name)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def group_json(view: GroupView) -> dict[str, Any]:
    out = _camel(asdict(view))
    out["secrets"] = [secret_json(s) for s in view.secrets]
    return out


def secret_json(view: SecretView) -> dict[str, Any]:
    out = _camel(asdict(view))
    if view.value is None:
        out.pop("value")
    return out


# A page of the device list is 100 to 1,000 of these: no asdict (it deep-copies every value)
# and no key conversion per row.
_DEVICE_FIELDS = tuple((f.name, to_camel(f.name)) for f in fields(DeviceView) if f.name != "access")


def device_json(view: DeviceView) -> dict[str, Any]:
    out = {key: _camel(getattr(view, name)) for name, key in _DEVICE_FIELDS}
    out.update(access_end_json(view.access))
    return out


# -- groups -------------------------------------------------------------------------------
@api.operation(
    "/groups",
    "GET",
    summary="List device groups, by name",
    tag=GROUPS,
    response=GroupList,
    paged=True,
)
def list_groups() -> Any:
    return page_json(services().groups.list(**page_args()), group_json)


@api.operation(
    "/groups",
    "POST",
    summary="Create a device group",
    tag=GROUPS,
    status=201,
    body=GroupCreate,
    response=GroupOut,
)
def create_group(body: GroupCreate) -> Any:
    fields = body.model_dump(exclude={"name"})
    return group_json(services().groups.create(body.name, actor=actor(), **fields)), 201


@api.operation(
    "/groups/<name>", "GET", summary="Show a device group", tag=GROUPS, response=GroupOut
)
def show_group(name: str) -> Any:
    return group_json(services().groups.show(name))


@api.operation(
    "/groups/<name>",
    "PATCH",
    summary="Change a device group",
    tag=GROUPS,
    body=GroupUpdate,
    response=GroupOut,
)
def update_group(name: str, body: GroupUpdate) -> Any:
    changes = body.model_dump(exclude_unset=True)
    return group_json(services().groups.update(name, actor=actor(), **changes))


@api.operation(
    "/groups/<name>", "DELETE", summary="Delete an empty device group", tag=GROUPS, status=204
)
def delete_group(name: str) -> Any:
    services().groups.delete(name, actor=actor())
    return "", 204


@api.operation(
    "/groups/<name>/secrets",
    "GET",
    summary="List a group's enrollment secrets and codes, oldest first (never their values)",
    tag=GROUPS,
    response=SecretList,
    paged=True,
)
def list_secrets(name: str) -> Any:
    return page_json(services().groups.secrets(name, **page_args()), secret_json)


@api.operation(
    "/groups/<name>/secrets",
    "POST",
    summary="Create an enrollment secret or one-time code (shown once)",
    tag=GROUPS,
    status=201,
    body=SecretCreate,
    response=SecretOut,
)
def create_secret(name: str, body: SecretCreate) -> Any:
    svc = services()
    made = svc.groups.create_secret(
        name,
        one_time=body.one_time,
        expires_at=resolve_expiry(body, svc.ctx.clock()),
        actor=actor(),
    )
    return secret_json(made), 201


@api.operation(
    "/groups/<name>/secrets/<int:secret_id>",
    "DELETE",
    summary="Revoke an enrollment secret or code",
    tag=GROUPS,
    response=SecretOut,
)
def revoke_secret(name: str, secret_id: int) -> Any:
    return secret_json(services().groups.revoke_secret(name, secret_id, actor=actor()))


# -- devices ------------------------------------------------------------------------------
@api.operation(
    "/devices",
    "GET",
    summary="List devices: search by id prefix, filter, sort (the dashboard's list)",
    tag=DEVICES,
    response=DeviceList,
    query={
        "q": "Device id prefix (letters, digits, hyphens; case counts)",
        "group": "Only this group's devices",
        "status": "pending, active or disabled",
        "expiring": "1: active devices whose password expires within the warning window",
        "not_seen": "1: active devices silent beyond their group's inactivity limit",
        "pending": "1: devices with a delivery not yet acknowledged",
        "sort": "device_id (default), last_seen, expiry or enrolled",
        "dir": "asc (default) or desc; devices without the time sort last ascending",
    },
    paged=True,
)
def list_devices() -> Any:
    found = services().devices.list(parse_query(request.args), **page_args())
    return page_json(found, device_json)


@api.operation(
    "/devices/<device_id>", "GET", summary="Show a device", tag=DEVICES, response=DeviceOut
)
def show_device(device_id: str) -> Any:
    return device_json(services().devices.show(device_id))


def _action(name: str, summary: str) -> None:
    def run(device_id: str) -> Any:
        method = getattr(services().devices, name.replace("-", "_"))
        return device_json(method(device_id, actor=actor()))

    run.__name__ = f"device_{name.replace('-', '_')}"
    api.operation(
        f"/devices/<device_id>/{name}", "POST", summary=summary, tag=DEVICES, response=DeviceOut
    )(run)


_action("approve", "Approve a pending device: its credentials are delivered")
_action("disable", "Disable a device: registry token and broker login cut at once, wipe sent")
_action("enable", "Enable a disabled device: a fresh password is delivered")
_action("redeliver", "Publish again what the device has not acknowledged (or rotate)")
_action("rotate", "A new password in the device's other slot, delivered now")
_action("allow-reenroll", "Let this device id enroll once more (new keys, same token)")


class PullRequest(ApiModel):
    images: list[str] = Field(default_factory=list, description="None: the configured ones")


@api.operation(
    "/devices/<device_id>/pull",
    "POST",
    summary="Tell a device to pull now (a signed command over MQTT)",
    tag=DEVICES,
    body=PullRequest,
    response=DeviceOut,
)
def device_pull(device_id: str, body: PullRequest) -> Any:
    return device_json(services().devices.pull(device_id, body.images, actor=actor()))


@api.operation(
    "/devices/<device_id>/reject",
    "POST",
    summary="Reject a pending device: its record, token and broker login are removed",
    tag=DEVICES,
    status=204,
)
def device_reject(device_id: str) -> Any:
    services().devices.reject(device_id, actor=actor())
    return "", 204


@api.operation(
    "/devices/<device_id>",
    "DELETE",
    summary="Delete a device and its token; the answer says when JWTs issued to it expire",
    tag=DEVICES,
    response=AccessEndOut,
)
def delete_device(device_id: str) -> Any:
    return access_end_json(services().devices.delete(device_id, actor=actor()))


# -- enrollment (no API key: the group secret or code authenticates) ----------------------
@api.operation(
    "/enroll",
    "POST",
    summary="Enroll a device",
    tag="enrollment",
    status=201,
    body=EnrollRequest,
    response=EnrollResponse,
    auth=False,
)
def enroll(body: EnrollRequest) -> Any:
    svc = services()
    settings = svc.ctx.settings
    view, mqtt_password = svc.devices.enroll(
        body.device_id,
        body.enrollment_secret or body.enrollment_code or "",
        body.x25519_public_key,
        body.ed25519_public_key,
    )
    device_id = view.device_id
    return {
        "deviceId": device_id,
        "status": view.status,
        "mqtt": {
            "url": svc.connected_broker().device_url,
            "username": view.mqtt_username,
            "password": mqtt_password,
            "topics": {
                "credentials": topics.credentials_topic(device_id),
                "commands": topics.commands_topic(device_id),
                "status": topics.status_topic(device_id),
            },
        },
        "serverSigningKey": svc.envelopes.server_signing_key(),
        "registry": {
            "loginServer": settings.registry_login_server,
            "username": device_token_name(device_id),
            "tokenEndpoint": settings.public_url.rstrip("/") + "/oauth2/token",
            "service": settings.registry_service,
        },
    }, 201
