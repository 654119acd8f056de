"""The device's credential store: one file, replaced atomically on every change, so that a crash
at any instant leaves either the state before the change or the state after it.

The state holds three slots and the last accepted envelope version of each kind:

- ``current``: the credential in use, proven against the registry;
- ``staged``: a newer credential, received but not yet proven; ``promote()`` makes it current
  and keeps the old current as ``previous`` until the next promotion, so nothing working is ever
  dropped before its successor has worked;
- ``versions``: ``{"credentials": n, "command": m}``, raised by ``stage`` and ``record_version``
  and never lowered, not even by ``wipe()`` (otherwise an old retained envelope could restore
  wiped credentials).

File ``credentials.json`` (mode 0600)::

    {"body": {"current": RECORD|null, "format": 1, "previous": RECORD|null,
              "staged": RECORD|null, "versions": {KIND: INT, ...}},
     "sha256": hex SHA-256 of the body as JSON with sorted keys and separators "," ":"}

A file whose checksum, JSON or fields do not check out raises ``StoreCorrupt``: it is never
taken as valid. ``open_store`` moves such a file aside (``credentials.json.corrupt-<time>``, at
most ``KEEP_CORRUPT`` kept) and starts empty, so the device says hello with version 0 and the
server delivers again. Only the agent writes the file; others (the docker credential helper)
read it with ``load_state``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from device_agent.state.atomic import fsync_dir, remove_stale_temps, write_atomic
from device_agent.state.credentials import Credentials, InvalidCredentials

log = logging.getLogger(__name__)

FILENAME = "credentials.json"
CORRUPT_SUFFIX = ".corrupt-"
KEEP_CORRUPT = 3
STORE_FORMAT = 1
MAX_FILE_BYTES = 1024 * 1024
CREDENTIALS_KIND = "credentials"
STATE_DIR_MODE = 0o700


class StoreError(Exception):
    """A store operation that cannot be done."""


class StoreCorrupt(StoreError):
    """The credential file exists but does not check out."""


@dataclass(frozen=True)
class StoreState:
    current: Credentials | None = None
    previous: Credentials | None = None
    staged: Credentials | None = None
    versions: dict[str, int] = field(default_factory=dict)

    def last_version(self, kind: str = CREDENTIALS_KIND) -> int:
        return self.versions.get(kind, 0)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


def _record(credentials: Credentials | None) -> dict[str, Any] | None:
    return None if credentials is None else credentials.to_record()


def encode_state(state: StoreState) -> bytes:
    body = {
        "format": STORE_FORMAT,
        "current": _record(state.current),
        "previous": _record(state.previous),
        "staged": _record(state.staged),
        "versions": dict(state.versions),
    }
    return _canonical({"body": body, "sha256": hashlib.sha256(_canonical(body)).hexdigest()})


def _credentials(body: dict[str, Any], slot: str) -> Credentials | None:
    record = body.get(slot)
    if record is None:
        return None
    if not isinstance(record, dict):
        raise StoreCorrupt(f"{slot} is not an object")
    return Credentials.from_record(record)


def _versions(value: object) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
    ):
        raise StoreCorrupt("versions must map kinds to non-negative integers")
    return dict(value)


def decode_state(data: bytes) -> StoreState:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StoreCorrupt("credential file is not JSON") from exc
    if not isinstance(document, dict) or set(document) != {"body", "sha256"}:
        raise StoreCorrupt("credential file lacks body or checksum")
    body = document["body"]
    if hashlib.sha256(_canonical(body)).hexdigest() != document["sha256"]:
        raise StoreCorrupt("credential file checksum mismatch")
    if not isinstance(body, dict) or body.get("format") != STORE_FORMAT:
        raise StoreCorrupt("unknown credential file format")
    try:
        return StoreState(
            current=_credentials(body, "current"),
            previous=_credentials(body, "previous"),
            staged=_credentials(body, "staged"),
            versions=_versions(body.get("versions")),
        )
    except InvalidCredentials as exc:
        raise StoreCorrupt(f"invalid stored credential: {exc}") from exc


def load_state(state_dir: Path) -> StoreState:
    """The stored state, read-only; an empty state when nothing was ever stored."""
    try:
        with open(state_dir / FILENAME, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return StoreState()
    if len(data) > MAX_FILE_BYTES:
        raise StoreCorrupt("credential file is too large")
    return decode_state(data)


class CredentialStore:
    """The single writer of a state directory's credential file."""

    def __init__(self, state_dir: Path) -> None:
        """Open for writing: remove leftovers of interrupted writes, then load."""
        os.makedirs(state_dir, mode=STATE_DIR_MODE, exist_ok=True)
        self.path = state_dir / FILENAME
        self.stale_temps_removed = remove_stale_temps(self.path)
        self._state = load_state(state_dir)

    @property
    def state(self) -> StoreState:
        return self._state

    def current(self) -> Credentials | None:
        return self._state.current

    def previous(self) -> Credentials | None:
        return self._state.previous

    def staged(self) -> Credentials | None:
        return self._state.staged

    def last_version(self, kind: str = CREDENTIALS_KIND) -> int:
        return self._state.last_version(kind)

    def _write(self, state: StoreState) -> None:
        write_atomic(self.path, encode_state(state))
        self._state = state

    def _raised(self, kind: str, version: int) -> dict[str, int]:
        if version <= self.last_version(kind):
            raise StoreError(
                f"{kind} version {version} is not newer than {self.last_version(kind)}"
            )
        return {**self._state.versions, kind: version}

    def stage(self, new: Credentials) -> None:
        """Keep ``new`` beside the current credential until it is proven; records its version."""
        versions = self._raised(CREDENTIALS_KIND, new.version)
        self._write(replace(self._state, staged=new, versions=versions))

    def promote(self) -> Credentials:
        """The staged credential works: make it current, keep the old current as previous."""
        staged = self._state.staged
        if staged is None:
            raise StoreError("nothing staged")
        current = self._state.current
        self._write(replace(self._state, current=staged, previous=current, staged=None))
        return staged

    def discard_staged(self) -> None:
        """The staged credential did not work; its version stays accepted."""
        self._write(replace(self._state, staged=None))

    def record_version(self, kind: str, version: int) -> None:
        """Remember an accepted envelope of another kind (a command)."""
        self._write(replace(self._state, versions=self._raised(kind, version)))

    def wipe(self) -> None:
        """Forget every credential; keep the versions so old envelopes stay refused."""
        self._write(StoreState(versions=dict(self._state.versions)))


def quarantine(state_dir: Path) -> Path:
    """Move the credential file aside (never deleted: someone may want to look at it); keep
    the newest KEEP_CORRUPT such files. Returns where it went."""
    path = state_dir / FILENAME
    aside = path.with_name(f"{FILENAME}{CORRUPT_SUFFIX}{time.time_ns()}")
    os.replace(path, aside)
    fsync_dir(state_dir)
    moved = sorted(state_dir.glob(f"{FILENAME}{CORRUPT_SUFFIX}*"), key=lambda p: p.name)
    for old in moved[:-KEEP_CORRUPT]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return aside


def open_store(state_dir: Path) -> tuple[CredentialStore, Path | None]:
    """The writer's store; a corrupt file is moved aside first (returned as the second item)
    and the store starts empty."""
    try:
        return CredentialStore(state_dir), None
    except StoreCorrupt as error:
        aside = quarantine(state_dir)
        log.error("credential store was corrupt (%s): moved to %s, starting empty", error, aside)
        return CredentialStore(state_dir), aside
