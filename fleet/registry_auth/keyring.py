"""The token-signing keys on disk: the active key, the next one and the retired ones.

Rotation never breaks a pull:

1. ``rotate()`` creates a key that is *published* at once (in the bundle and the JWKS) but signs
   only after ``publish_delay`` seconds: time to write the bundle and restart the registries,
   which read their ``rootcertbundle`` only at start.
2. The key it replaces keeps its place in the bundle until its last token can have expired:
   ``retire_after`` = the new key's first signing time + token lifetime + the registry's leeway.
3. ``prune()`` (also run by ``rotate()``) then drops it; rewrite the bundle afterwards.

A compromised key is not rotated out but revoked: ``revoke(kid)`` drops it from the ring (so
from the bundle and the JWKS) at once, and if it was signing, a fresh key signs at once in its
place, with no publish delay: a registry trusting the old bundle refuses the fresh key's tokens
until it is given the new bundle and restarted, which is the price of stopping the old key now.

The ring is one JSON document kept by a :class:`RingStore`, read and rewritten whole under the
store's lock so that two processes cannot rotate at once. :class:`FileRingStore` keeps it in one
file (mode 0600, written atomically) guarded by an ``flock``; the server keeps it in the
database, sealed, so every server of a deployment shares it
(``fleet.services.shared_keys.DatabaseRingStore``, a row lock). Processes that only sign
(every token endpoint worker) call :meth:`KeyRing.refresh` before :meth:`KeyRing.signing_key`:
it asks the store for its stamp (a ``stat``, or one small query) and picks up another process's
rotation, so no worker signs with a key past its schedule.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from fleet.data_dir import FILE_MODE as PRIVATE_MODE
from fleet.data_dir import write_private_file as write_atomic
from fleet.domain.errors import ValidationError
from fleet.registry_auth.keys import SigningKey, generate_signing_key
from fleet.registry_auth.tokens import DEFAULT_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME, REGISTRY_LEEWAY

PUBLIC_FILE_MODE = 0o644
STATE_FILE = "keyring.json"
LOCK_FILE = ".keyring.lock"
DIRECTORY_MODE = 0o700
STATE_VERSION = 1
DEFAULT_PUBLISH_DELAY = 0

Clock = Callable[[], float]


@dataclass(frozen=True)
class RingKey:
    """A key and its schedule, in seconds since the epoch."""

    key: SigningKey
    created_at: float
    signing_from: float
    retire_after: float | None = None

    def is_published(self, now: float) -> bool:
        return self.retire_after is None or now < self.retire_after

    def to_json(self) -> dict[str, object]:
        return {
            "kid": self.key.kid,
            "created_at": self.created_at,
            "signing_from": self.signing_from,
            "retire_after": self.retire_after,
            "certificate": self.key.certificate_pem(),
            "private_key": self.key.private_key_pem(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RingKey:
        retire_after = data["retire_after"]
        return cls(
            key=SigningKey.from_pem(str(data["private_key"]), str(data["certificate"])),
            created_at=float(str(data["created_at"])),
            signing_from=float(str(data["signing_from"])),
            retire_after=None if retire_after is None else float(str(retire_after)),
        )


class RingDocument:
    """The ring's document as a store holds it, read under the store's lock.

    ``data`` is ``None`` when the store holds no ring yet. :meth:`write` replaces it when the
    lock is let go; the store then sets ``stamp`` to what :meth:`RingStore.stamp` answers for
    the new document.
    """

    def __init__(self, data: bytes | None, stamp: Hashable | None) -> None:
        self.data = data
        self.stamp = stamp
        self.written: bytes | None = None

    def write(self, data: bytes) -> None:
        self.written = data


class RingStore(Protocol):
    """Where a ring's document lives."""

    def describe(self) -> str:
        """Names the store in error messages."""
        ...

    def stamp(self) -> Hashable | None:
        """Cheap: a value that changes whenever the document does (``None``: no document)."""
        ...

    def locked(self) -> AbstractContextManager[RingDocument]:
        """The document under an exclusive lock held until the block ends."""
        ...


class FileRingStore:
    """``keyring.json`` in a directory of its own, guarded by an ``flock`` beside it."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    def describe(self) -> str:
        return str(self.path)

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return None
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    @contextlib.contextmanager
    def locked(self) -> Iterator[RingDocument]:
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stamp = self.stamp()
            data = self.path.read_bytes() if stamp is not None else None
            document = RingDocument(data, stamp)
            yield document
            if document.written is not None:
                write_atomic(self.path, document.written, mode=PRIVATE_MODE)
                document.stamp = self.stamp()
        finally:
            os.close(fd)


class KeyRing:
    """Open with :meth:`open`; every method taking ``now`` defaults to the ring's clock."""

    def __init__(
        self, store: RingStore, *, token_lifetime: int, publish_delay: float, clock: Clock
    ) -> None:
        if token_lifetime < MIN_TOKEN_LIFETIME:
            raise ValidationError(
                f"token lifetime {token_lifetime} s is below {MIN_TOKEN_LIFETIME} s",
                code="InvalidTokenLifetime",
            )
        if publish_delay < 0:
            raise ValidationError("the publish delay cannot be negative", code="InvalidDelay")
        self.store = store
        self.token_lifetime = token_lifetime
        self.publish_delay = publish_delay
        self._clock = clock
        self._entries: tuple[RingKey, ...] = ()
        self._loaded_stamp: Hashable | None = None

    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        publish_delay: float = DEFAULT_PUBLISH_DELAY,
        clock: Clock = time.time,
    ) -> KeyRing:
        """Load the ring in ``directory``, creating the directory and a first key if needed."""
        return cls.open_store(
            FileRingStore(directory),
            token_lifetime=token_lifetime,
            publish_delay=publish_delay,
            clock=clock,
        )

    @classmethod
    def open_store(
        cls,
        store: RingStore,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        publish_delay: float = DEFAULT_PUBLISH_DELAY,
        clock: Clock = time.time,
    ) -> KeyRing:
        """Load the ring ``store`` holds, making it with a first key if it holds none."""
        ring = cls(store, token_lifetime=token_lifetime, publish_delay=publish_delay, clock=clock)
        with ring._locked() as document:
            if document.data is not None:
                ring._load(document)
            else:
                now = clock()
                ring._entries = (ring._new_entry(now, signing_from=now),)
                ring._save(document)
        return ring

    @property
    def retention(self) -> int:
        """How long a replaced key stays published after its successor starts signing."""
        return self.token_lifetime + REGISTRY_LEEWAY

    @property
    def entries(self) -> tuple[RingKey, ...]:
        return self._entries

    def signing_key(self, now: float | None = None) -> SigningKey:
        """The key to sign with: the newest one whose ``signing_from`` has come."""
        return self._entries[self._signing_index(self._now(now))].key

    def published_keys(self, now: float | None = None) -> list[SigningKey]:
        at = self._now(now)
        return [e.key for e in self._entries if e.is_published(at)]

    def rotate(self, now: float | None = None) -> SigningKey:
        """Add a key that signs after the publish delay; schedule the current one's retirement."""
        at = self._now(now)
        with self._locked() as document:
            self._load(document)
            entry = self._new_entry(at, signing_from=at + self.publish_delay)
            *older, newest = self._entries
            retiring = replace(newest, retire_after=entry.signing_from + self.retention)
            self._entries = (*older, retiring, entry)
            self._drop_retired(at)
            self._save(document)
        return entry.key

    def revoke(self, kid: str, now: float | None = None) -> SigningKey | None:
        """Drop key ``kid`` now; return the fresh key that signs in its place, if it was signing.

        The fresh key takes the revoked one's place in the schedule: it signs from ``now`` until
        a key already waiting for its signing time takes over, as the revoked one would have.
        A waiting key that is revoked leaves the keys before it signing as if it never existed.
        An unknown ``kid`` changes nothing.
        """
        at = self._now(now)
        with self._locked() as document:
            self._load(document)
            kids = [e.key.kid for e in self._entries]
            if kid not in kids:
                raise ValidationError(
                    f"no key {kid!r} in the key ring; it holds {', '.join(kids)}",
                    code="UnknownKey",
                )
            index = kids.index(kid)
            signing = self._signing_index(at)
            entries = list(self._entries)
            revoked = entries.pop(index)
            fresh = None
            if index == signing:
                fresh = replace(
                    self._new_entry(at, signing_from=at), retire_after=revoked.retire_after
                )
                entries.insert(index, fresh)
            elif index > signing:
                # It was waiting: the keys before it sign until the next one's time instead.
                for position in range(signing, index):
                    entries[position] = self._rescheduled(entries, position, revoked)
            self._entries = tuple(entries)
            self._drop_retired(at)
            self._save(document)
        return None if fresh is None else fresh.key

    def prune(self, now: float | None = None) -> list[str]:
        """Drop keys whose last token has expired; return their key ids."""
        at = self._now(now)
        with self._locked() as document:
            self._load(document)
            dropped = self._drop_retired(at)
            if dropped:
                self._save(document)
        return dropped

    def refresh(self) -> bool:
        """Reload if another process changed the ring; return whether it did."""
        if self.store.stamp() == self._loaded_stamp:
            return False
        with self._locked() as document:
            self._load(document)
        return True

    def write_bundle(
        self, path: Path | str, now: float | None = None, mode: int = PUBLIC_FILE_MODE
    ) -> None:
        """Write every published certificate as PEM: the registry's ``rootcertbundle``."""
        pems = "".join(key.certificate_pem() for key in self.published_keys(now))
        write_atomic(Path(path), pems.encode("ascii"), mode=mode)

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.jwk() for key in self.published_keys(now)]}

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _new_entry(self, now: float, *, signing_from: float) -> RingKey:
        key = generate_signing_key(datetime.fromtimestamp(now, UTC))
        return RingKey(key, created_at=now, signing_from=signing_from)

    def _signing_index(self, at: float) -> int:
        ready = [i for i, e in enumerate(self._entries) if e.signing_from <= at]
        return ready[-1] if ready else 0

    def _rescheduled(self, entries: list[RingKey], position: int, removed: RingKey) -> RingKey:
        """``entries[position]`` retired as ``rotate()`` would have, had ``removed`` (which was
        after it) never been added: its signing ends when the first key after it is ready."""
        entry = entries[position]
        later = [e.signing_from for e in entries[position + 1 :]]
        if later and min(later) <= removed.signing_from:
            return entry  # another key ends its signing no later: its schedule stands
        if not later:
            return replace(entry, retire_after=None)
        return replace(entry, retire_after=min(later) + self.retention)

    def _drop_retired(self, now: float) -> list[str]:
        kept = tuple(e for e in self._entries if e.is_published(now))
        dropped = [e.key.kid for e in self._entries if not e.is_published(now)]
        self._entries = kept
        return dropped

    def _load(self, document: RingDocument) -> None:
        where = self.store.describe()
        if document.data is None:
            raise ValidationError(f"key ring {where} is missing", code="InvalidKeyRing")
        try:
            state = json.loads(document.data.decode("utf-8"))
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {state.get('version')!r}")
            entries = tuple(RingKey.from_json(item) for item in state["keys"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValidationError(
                f"key ring {where} is unreadable: {error}", code="InvalidKeyRing"
            ) from error
        if not entries:
            raise ValidationError(f"key ring {where} has no keys", code="InvalidKeyRing")
        self._entries = entries

    def _save(self, document: RingDocument) -> None:
        state = {"version": STATE_VERSION, "keys": [e.to_json() for e in self._entries]}
        document.write(json.dumps(state, indent=2).encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[RingDocument]:
        """The store's document under its lock; what this ring last read or wrote is
        remembered by the document's stamp, so :meth:`refresh` skips it."""
        with self.store.locked() as document:
            yield document
        self._loaded_stamp = document.stamp
