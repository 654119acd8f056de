"""One registry credential as a device holds it, and the checks that turn a decrypted payload or
a stored record into one. Its ``repr`` never shows the password."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SLOTS = ("password1", "password2")
MAX_FIELD_LENGTH = 1024


class InvalidCredentials(ValueError):
    """A payload or record that is not a usable credential."""


@dataclass(frozen=True)
class Credentials:
    login_server: str
    username: str
    password: str = field(repr=False)
    slot: str
    expiry: datetime | None
    version: int  # the envelope version that delivered it

    def __post_init__(self) -> None:
        for name in ("login_server", "username", "password"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD_LENGTH:
                raise InvalidCredentials(f"{name} must be a non-empty string")
        if self.slot not in SLOTS:
            raise InvalidCredentials(f"slot must be one of {', '.join(SLOTS)}")
        if self.expiry is not None and (
            not isinstance(self.expiry, datetime) or self.expiry.tzinfo is None
        ):
            raise InvalidCredentials("expiry must be a timezone-aware datetime or None")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidCredentials("version must be a positive integer")

    @classmethod
    def from_payload(cls, payload: dict[str, Any], version: int) -> Credentials:
        """From an opened ``credentials`` envelope (``expiry``: ISO 8601 with offset, or null)."""
        expiry = payload.get("expiry")
        if expiry is not None:
            if not isinstance(expiry, str):
                raise InvalidCredentials("expiry must be an ISO 8601 string or null")
            try:
                expiry = datetime.fromisoformat(expiry)
            except ValueError:
                raise InvalidCredentials("expiry is not ISO 8601") from None
        return cls(
            login_server=payload.get("login_server"),
            username=payload.get("username"),
            password=payload.get("password"),
            slot=payload.get("slot"),
            expiry=expiry,
            version=version,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Credentials:
        version = record.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidCredentials("version must be an integer")
        return cls.from_payload(record, version)

    def to_payload(self) -> dict[str, Any]:
        """The ``credentials`` envelope payload the server seals (without ``version``)."""
        return {
            "kind": "credentials",
            "login_server": self.login_server,
            "username": self.username,
            "password": self.password,
            "slot": self.slot,
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
        }

    def to_record(self) -> dict[str, Any]:
        record = self.to_payload()
        del record["kind"]
        record["version"] = self.version
        return record
