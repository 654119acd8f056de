"""The JSON status messages a device publishes on its status topic (docs/protocol.md), typed:
one dataclass per message type, built by the agent and read by the server with the one parser,
``parse_status``. None of them ever carries a password.

Each message is also a read-only mapping of its JSON object (``dict(message)``,
``message["version"]``), which is what ``encode`` writes. ``parse_status`` takes at most
``MAX_STATUS_BYTES`` and raises ``InvalidStatus`` (saying why) for anything that is not one of
these messages; fields it does not know are ignored, as the protocol asks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from device_agent.protocol.envelope import MAX_VERSION, Kind

CREDENTIALS = Kind.CREDENTIALS.value
COMMAND = Kind.COMMAND.value
KINDS = frozenset(kind.value for kind in Kind)
MAX_STATUS_BYTES = 4096
MAX_ERROR_CHARS = 500


class InvalidStatus(ValueError):
    """Not a status message of this protocol; the message says why."""


class StatusTooLarge(InvalidStatus):
    """Over ``MAX_STATUS_BYTES``: refused before it is parsed."""


class StatusNotJson(InvalidStatus):
    """Not a JSON document."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Message(Mapping[str, Any]):
    """A status message as the mapping of its JSON object."""

    TYPE: ClassVar[str]

    def wire(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.wire()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wire())

    def __len__(self) -> int:
        return len(self.wire())


@dataclass(frozen=True, eq=False)
class Hello(_Message):
    """On every (re)connect: the newest version of each kind the device holds (0 for none)."""

    TYPE: ClassVar[str] = "hello"
    versions: Mapping[str, int] = field(default_factory=dict)
    agent: str | None = None

    def wire(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.TYPE, "versions": dict(self.versions)}
        if self.agent is not None:
            message["agent"] = self.agent
        return message


@dataclass(frozen=True, eq=False)
class Ack(_Message):
    """An envelope carried out: credentials proven and stored (with their slot), or a command
    done."""

    TYPE: ClassVar[str] = "ack"
    kind: str
    version: int
    slot: str | None = None

    def wire(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.TYPE, "kind": self.kind, "version": self.version}
        if self.slot is not None:
            message["slot"] = self.slot
        return message


@dataclass(frozen=True, eq=False)
class Reject(_Message):
    """An envelope refused: ``reason`` names why, ``version`` is the one claimed, if readable."""

    TYPE: ClassVar[str] = "reject"
    kind: str
    version: int | None
    reason: str

    def wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "kind": self.kind,
            "version": self.version,
            "reason": self.reason,
        }


@dataclass(frozen=True, eq=False)
class PullResult(_Message):
    """One pull's result: the image (``loginServer/repo:tag``), the manifest digest written or
    the error, and when."""

    TYPE: ClassVar[str] = "pull"
    image: str
    ok: bool
    digest: str | None = None
    error: str | None = None
    at: str | None = None

    @classmethod
    def now(cls, image: str, *, ok: bool, digest: str | None, error: str | None) -> PullResult:
        """As the agent reports it: the error cut to ``MAX_ERROR_CHARS``, the time now."""
        clipped = None if error is None else error[:MAX_ERROR_CHARS]
        return cls(image=image, ok=ok, digest=digest, error=clipped, at=now_iso())

    def wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "image": self.image,
            "ok": self.ok,
            "digest": self.digest,
            "error": self.error,
            "at": self.at,
        }


StatusMessage = Hello | Ack | Reject | PullResult


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(message), separators=(",", ":"), sort_keys=True).encode("utf-8")


# -- parsing ------------------------------------------------------------------------------------
def _version(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
        raise InvalidStatus(f"{where} must be a whole number from 0 to {MAX_VERSION}")
    return value


def _kind(message: Mapping[str, Any], type_: str) -> str:
    kind = message.get("kind")
    if kind not in KINDS:
        raise InvalidStatus(f"{type_}: kind must be one of {sorted(KINDS)}")
    return str(kind)


def _text(message: Mapping[str, Any], name: str, type_: str, *, optional: bool) -> str | None:
    value = message.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidStatus(f"{type_}: {name} must be a string" + (" or null" if optional else ""))
    return value


def _hello(message: Mapping[str, Any]) -> Hello:
    versions = message.get("versions", {})
    if not isinstance(versions, dict):
        raise InvalidStatus("hello: versions must be an object")
    held = {k: _version(v, f"hello: versions.{k}") for k, v in versions.items() if k in KINDS}
    return Hello(versions=held, agent=_text(message, "agent", "hello", optional=True))


def _ack(message: Mapping[str, Any]) -> Ack:
    return Ack(
        kind=_kind(message, "ack"),
        version=_version(message.get("version"), "ack: version"),
        slot=_text(message, "slot", "ack", optional=True),
    )


def _reject(message: Mapping[str, Any]) -> Reject:
    version = message.get("version")
    return Reject(
        kind=_kind(message, "reject"),
        version=None if version is None else _version(version, "reject: version"),
        reason=str(_text(message, "reason", "reject", optional=False)),
    )


def _pull(message: Mapping[str, Any]) -> PullResult:
    ok = message.get("ok")
    if not isinstance(ok, bool):
        raise InvalidStatus("pull: ok must be true or false")
    return PullResult(
        image=str(_text(message, "image", "pull", optional=False)),
        ok=ok,
        digest=_text(message, "digest", "pull", optional=True),
        error=_text(message, "error", "pull", optional=True),
        at=_text(message, "at", "pull", optional=True),
    )


_PARSERS = {Hello.TYPE: _hello, Ack.TYPE: _ack, Reject.TYPE: _reject, PullResult.TYPE: _pull}
TYPES = frozenset(_PARSERS)


def parse_status(payload: bytes) -> StatusMessage:
    """The status message in ``payload``; ``InvalidStatus`` (``StatusTooLarge``,
    ``StatusNotJson`` or the base class) when it is not one."""
    if len(payload) > MAX_STATUS_BYTES:
        raise StatusTooLarge(f"{len(payload)} bytes, over {MAX_STATUS_BYTES}")
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        raise StatusNotJson("not a JSON document") from None
    if not isinstance(message, dict):
        raise InvalidStatus("not a JSON object")
    type_ = message.get("type")
    parse = _PARSERS.get(type_) if isinstance(type_, str) else None
    if parse is None:
        raise InvalidStatus(f"unknown status type {type_!r}"[:100])
    return parse(message)
