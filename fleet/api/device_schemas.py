"""What enters and leaves the device, group and enrollment routes."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from fleet.api.paging import NEXT_CURSOR
from fleet.api.schemas import MAX_EXPIRATION_DAYS, AccessEndOut, ApiModel, Instant, view_model
from fleet.registry_auth.tokens import (
    DEFAULT_DEVICE_TOKEN_LIFETIME,
    MAX_TOKEN_LIFETIME,
    MIN_TOKEN_LIFETIME,
)
from fleet.services.views import DeviceView, GroupView, SecretView


class GroupCreate(ApiModel):
    name: str
    scope_map: str = Field(description="A map holding only content/read and metadata/read")
    password_lifetime_days: int = 30
    rotation_window_days: int = 7
    inactivity_limit_days: int | None = None
    require_approval: bool = False
    jwt_lifetime_seconds: int = Field(
        default=DEFAULT_DEVICE_TOKEN_LIFETIME,
        ge=MIN_TOKEN_LIFETIME,
        le=MAX_TOKEN_LIFETIME,
        description="Lifetime of the devices' registry JWTs, in seconds",
    )


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# A field that may be left out but never sent as null: the document shows no null default.
UNCHANGED: Any = Field(default=None, json_schema_extra=_drop_default)


class GroupUpdate(ApiModel):
    """Only the fields given change. Null is a value only for ``inactivityLimitDays`` (no
    limit); for the others it is refused, and the document does not offer it."""

    scope_map: str | SkipJsonSchema[None] = UNCHANGED
    password_lifetime_days: int | SkipJsonSchema[None] = UNCHANGED
    rotation_window_days: int | SkipJsonSchema[None] = UNCHANGED
    inactivity_limit_days: int | None = None
    require_approval: bool | SkipJsonSchema[None] = UNCHANGED
    jwt_lifetime_seconds: int | SkipJsonSchema[None] = Field(
        default=None,
        ge=MIN_TOKEN_LIFETIME,
        le=MAX_TOKEN_LIFETIME,
        json_schema_extra=_drop_default,
    )

    @field_validator(
        "scope_map",
        "password_lifetime_days",
        "rotation_window_days",
        "require_approval",
        "jwt_lifetime_seconds",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep it unchanged)")
        return value


class SecretCreate(ApiModel):
    one_time: bool = Field(default=False, description="A code for one device, usable once")
    expiry: Instant | None = None
    expiration_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRATION_DAYS)


SecretOut = view_model(
    "SecretOut",
    SecretView,
    module=__name__,
    replace={
        "value": (
            str | None,
            Field(default=None, description="Present only in the creating answer"),
        )
    },
)


class SecretList(ApiModel):
    value: list[SecretOut]
    next_cursor: str | None = NEXT_CURSOR


GroupOut = view_model(
    "GroupOut",
    GroupView,
    module=__name__,
    replace={
        "secrets": (
            list[SecretOut],
            Field(
                description="The group's newest 20 secrets and codes, oldest first (never their "
                "values); every one is paged at /groups/{name}/secrets"
            ),
        ),
        "secrets_truncated": (
            bool,
            Field(
                False, description="True when the group has older secrets than those listed here"
            ),
        ),
        "jwt_lifetime_seconds": (
            int,
            Field(
                description="How long its devices' registry JWTs live (60 to 3600 s); a disabled "
                "device's access ends at most this plus the registry's 60 s leeway later"
            ),
        ),
    },
)


class GroupList(ApiModel):
    value: list[GroupOut]
    next_cursor: str | None = NEXT_CURSOR


# Its registry access (``access``) is the two fields of AccessEndOut, first.
DeviceOut = view_model(
    "DeviceOut", DeviceView, base=AccessEndOut, module=__name__, exclude=("access",)
)


class DeviceList(ApiModel):
    value: list[DeviceOut]
    next_cursor: str | None = NEXT_CURSOR


class EnrollRequest(ApiModel):
    device_id: str
    enrollment_secret: str | None = None
    enrollment_code: str | None = None
    x25519_public_key: str
    ed25519_public_key: str

    @model_validator(mode="after")
    def _one_secret(self) -> EnrollRequest:
        if bool(self.enrollment_secret) == bool(self.enrollment_code):
            raise ValueError("give enrollmentSecret or enrollmentCode, exactly one")
        return self


class MqttTopics(ApiModel):
    credentials: str
    commands: str
    status: str


class MqttLogin(ApiModel):
    url: str
    username: str
    password: str
    topics: MqttTopics


class RegistryInfo(ApiModel):
    login_server: str
    username: str
    token_endpoint: str
    service: str


class EnrollResponse(ApiModel):
    device_id: str
    status: str
    mqtt: MqttLogin
    server_signing_key: str
    registry: RegistryInfo
