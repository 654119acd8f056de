"""What every server of a deployment signs with, kept once in the database, sealed.

Several servers on one database must sign with the same keys: the registry trusts one bundle
and a device one envelope key. So the JWT key ring and the envelope signing key are rows of
``shared_keys``, never files of a data directory. Each row is sealed with AES-256-GCM under a
key derived (HKDF-SHA256) from the secret key, with the row's name as associated data: a row
cannot be read without the secret key nor moved under another name. The secret key itself is
the one thing every server is given (``FLEET_SECRET_KEY``, or the same ``secret.key`` file);
a server given another one cannot open the rows and refuses to start
(:class:`SecretKeyMismatch`) rather than sign with keys of its own.

Every read-modify-write runs in one transaction that first writes the row (an insert that
does nothing when the row exists): on PostgreSQL that, with ``SELECT ... FOR UPDATE``, holds
the row's lock until the commit, and on SQLite the write lock of the database, so two servers
rotating or revoking at once take turns and neither loses the other's key.

Reading whether the ring changed is one small query (its ``version``); the signing service
asks at most once per ``RING_CHECK_INTERVAL_S`` per process, never per token request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from fleet.db.engine import Database
from fleet.db.models import SharedKey
from fleet.db.types import utcnow
from fleet.domain.errors import FleetError
from fleet.registry_auth.keyring import STATE_FILE, RingDocument
from fleet.services.context import ServiceContext

log = logging.getLogger(__name__)

KEY_RING = "jwt-key-ring"
ENVELOPE_KEY = "envelope-signing-key"
NAMES = (KEY_RING, ENVELOPE_KEY)
SEAL_PURPOSE = "shared-keys-v1"
NONCE_BYTES = 12
# A ring holds a few keys of about 2 KiB each. Writing more than this is refused (the write
# changes nothing), so every row stays readable; a larger row is not one of ours.
MAX_PLAIN_BYTES = 1024 * 1024
MAX_SEALED_BYTES = MAX_PLAIN_BYTES + 64


class SharedKeyError(FleetError):
    code = "SharedKeyError"


class SecretKeyMismatch(SharedKeyError):
    code = "SecretKeyMismatch"


class LocalKeyConflict(SharedKeyError):
    code = "LocalKeyConflict"


class Sealer:
    """AES-256-GCM with a fresh 96-bit nonce per seal; the row name is the associated data."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, name: str, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, name.encode())

    def open(self, name: str, sealed: bytes) -> bytes:
        if len(sealed) > MAX_SEALED_BYTES:
            raise SharedKeyError(
                f"shared key {name!r} holds {len(sealed)} bytes, more than {MAX_SEALED_BYTES}"
            )
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], name.encode())
        except (InvalidTag, ValueError):
            raise SecretKeyMismatch(
                f"cannot open the shared key {name!r} kept in the database: it was sealed with "
                "another secret key. Every server on this database must be given the same "
                "secret key (FLEET_SECRET_KEY, or the same secret.key in its data directory)"
            ) from None


class SharedKeys:
    """The ``shared_keys`` rows, each read and written under its lock."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    @classmethod
    def of(cls, ctx: ServiceContext) -> SharedKeys:
        return cls(ctx.db, Sealer(ctx.hasher.sealing_key(SEAL_PURPOSE)))

    def version(self, name: str) -> int | None:
        """The row's version: one indexed read of an integer."""
        with Session(self.db.engine) as session:
            found = session.execute(
                select(SharedKey.version).where(SharedKey.name == name)  # type: ignore[arg-type]
            ).scalar()
        return None if found is None else int(found)

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[RingDocument]:
        """Row ``name`` opened under its lock; what the caller writes is sealed and committed."""
        if name not in NAMES:
            raise SharedKeyError(f"unknown shared key {name!r}")
        with self.db.session() as session:
            row = _lock_row(session, name)
            plain = self.sealer.open(name, row.sealed) if row.sealed else None
            document = RingDocument(plain, row.version if plain is not None else None)
            yield document
            if document.written is not None:
                if len(document.written) > MAX_PLAIN_BYTES:
                    raise SharedKeyError(
                        f"the shared key {name!r} would hold {len(document.written)} bytes, more "
                        f"than {MAX_PLAIN_BYTES}: nothing was changed (a key ring this large "
                        "holds hundreds of keys; let the retired ones expire and be pruned)"
                    )
                row.sealed = self.sealer.seal(name, document.written)
                row.version += 1
                row.updated_at = utcnow()
                session.add(row)
                session.flush()
                document.stamp = row.version

    def envelope_key(self, *, create: bool) -> Ed25519PrivateKey:
        """The Ed25519 key that signs envelopes, made once for the whole deployment."""
        with self.locked(ENVELOPE_KEY) as document:
            if document.data is not None:
                return _envelope_key_from(document.data)
            if not create:
                raise SharedKeyError("the database holds no envelope signing key: run `fleet init`")
            key = Ed25519PrivateKey.generate()
            document.write(_envelope_pem(key))
            return key

    def adopt_file(self, name: str, path: Path) -> str | None:
        """Move a key file of an older data directory into row ``name``, once.

        The file is imported when the row is empty, and removed once the row holds it (also
        when another server imported the same file first). A file that differs from what the
        row holds is refused (:class:`LocalKeyConflict`): the database wins, but not silently.
        Returns what was done, for ``fleet init`` to say, or ``None`` when there was no file.
        """
        if not path.exists():
            return None
        data = path.read_bytes()
        if len(data) > MAX_PLAIN_BYTES:
            raise SharedKeyError(f"{path} holds {len(data)} bytes: not a key file of fleet")
        with self.locked(name) as document:
            if document.data is None:
                _check_file(name, data, path)
                document.write(data)
                done = f"moved {path} into the database ({name}) and removed it"
            elif not _same_keys(name, document.data, data):
                raise LocalKeyConflict(
                    f"{path} holds other keys than the database's {name}: the database's are "
                    "the ones every server signs with. Move the file away if nothing still "
                    "trusts its keys (devices enrolled through this server reject envelopes "
                    "signed by another key, registries refuse JWTs outside their bundle), then "
                    "run `fleet init` again"
                )
            else:
                done = f"removed {path}: the database already holds the same keys ({name})"
        path.unlink()
        return done


def local_key_files(signing_key_dir: Path, envelope_key_file: Path) -> list[Path]:
    """Key files of an older data directory that `fleet init` has not yet moved."""
    return [p for p in (signing_key_dir / STATE_FILE, envelope_key_file) if p.exists()]


def _lock_row(session: Session, name: str) -> SharedKey:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # A write first: SQLite takes its write lock here, PostgreSQL waits for a row being made.
    session.execute(
        insert(SharedKey)
        .values(name=name, version=0, sealed=b"", updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.execute(
        select(SharedKey).where(SharedKey.name == name).with_for_update()  # type: ignore[arg-type]
    ).scalar_one()
    return row


def _envelope_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _envelope_key_from(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as error:
        raise SharedKeyError(f"the envelope signing key is unreadable: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SharedKeyError("the envelope signing key is not an Ed25519 private key")
    return key


def _check_file(name: str, data: bytes, path: Path) -> None:
    """Refuse to import a file that is not what its name says."""
    try:
        if name == ENVELOPE_KEY:
            _envelope_key_from(data)
        else:
            _ring_kids(data)
    except (SharedKeyError, ValueError) as error:
        raise SharedKeyError(f"{path} cannot be moved into the database: {error}") from None


def _ring_kids(data: bytes) -> set[str]:
    state = json.loads(data.decode("utf-8"))
    if not isinstance(state, dict) or not isinstance(state.get("keys"), list):
        raise ValueError("not a key ring")
    return {str(item["kid"]) for item in state["keys"]}


def _same_keys(name: str, held: bytes, local: bytes) -> bool:
    """Whether the local file holds nothing the database does not: the same envelope key,
    or ring keys all in the database's ring (which may have rotated since it was imported)."""
    if name == ENVELOPE_KEY:
        return _envelope_pem(_envelope_key_from(held)) == _envelope_pem(_envelope_key_from(local))
    try:
        return _ring_kids(local) <= _ring_kids(held)
    except (ValueError, KeyError, TypeError):
        return False


class DatabaseRingStore:
    """A :class:`~fleet.registry_auth.keyring.RingStore` on the ``shared_keys`` row."""

    def __init__(self, keys: SharedKeys, name: str = KEY_RING) -> None:
        self.keys = keys
        self.name = name

    def describe(self) -> str:
        return f"{self.name} (database)"

    def stamp(self) -> int | None:
        return self.keys.version(self.name) or None  # 0: the row is being made

    def locked(self) -> contextlib.AbstractContextManager[RingDocument]:
        return self.keys.locked(self.name)
