"""Wiring for a server host: settings -> database, keys and services. ``fleet init`` lives here."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from fleet.config import Settings
from fleet.credentials import MIN_SECRET_KEY_BYTES, SecretHasher
from fleet.data_dir import (
    create_private_database,
    make_private_directory,
    tighten,
    write_private_file,
)
from fleet.db.engine import Database
from fleet.db.migrate import upgrade
from fleet.domain.errors import FleetError
from fleet.registry_auth.keyring import STATE_FILE
from fleet.services import Services
from fleet.services.context import ServiceContext
from fleet.services.shared_keys import ENVELOPE_KEY, KEY_RING, SharedKeys, local_key_files

log = logging.getLogger(__name__)
MAX_SECRET_KEY_FILE_BYTES = 4096
Say = Callable[[str], None]


class NotInitialisedError(FleetError):
    code = "NotInitialised"


def _decode_key(text: str) -> bytes:
    raw = text.strip()
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        key = raw.encode()
    return key


def load_secret_key(settings: Settings, *, create: bool = False) -> bytes:
    path = settings.secret_key_path
    if settings.secret_key:
        key = _decode_key(settings.secret_key)
    elif path.exists():
        if path.stat().st_size > MAX_SECRET_KEY_FILE_BYTES:
            raise FleetError(f"{path} is larger than a secret key file can be")
        key = _decode_key(path.read_text())
    elif settings.secret_key_file:
        raise FleetError(
            f"FLEET_SECRET_KEY_FILE={path} does not exist: it is never created, give every "
            "server the same file"
        )
    elif create:
        key = secrets.token_bytes(MIN_SECRET_KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, base64.b64encode(key) + b"\n")
    else:
        raise NotInitialisedError(
            f"no secret key: run `fleet init` (it writes {path}) "
            "or set FLEET_SECRET_KEY or FLEET_SECRET_KEY_FILE"
        )
    if len(key) < MIN_SECRET_KEY_BYTES:
        raise FleetError(f"the secret key must hold at least {MIN_SECRET_KEY_BYTES} bytes")
    return key


def check_schema(db: Database) -> None:
    """Refuse to run against a database that `fleet init` has not prepared."""
    try:
        with db.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        version = None
    if version is None:
        raise NotInitialisedError(
            f"the database {db.engine.url.render_as_string(hide_password=True)} has no fleet "
            "schema: run `fleet init`"
        )


def adopt_local_keys(settings: Settings, keys: SharedKeys, say: Say) -> None:
    """Move the key files of a data directory made before the keys lived in the database."""
    for name, path in (
        (KEY_RING, settings.signing_key_dir / STATE_FILE),
        (ENVELOPE_KEY, settings.envelope_key_file),
    ):
        done = keys.adopt_file(name, path)
        if done is not None:
            say(done)


def refuse_local_keys(settings: Settings) -> None:
    """A server never signs with keys of its data directory, nor ignores them unsaid."""
    found = local_key_files(settings.signing_key_dir, settings.envelope_key_file)
    if found:
        raise NotInitialisedError(
            f"{', '.join(map(str, found))}: the signing keys now live in the database, shared "
            "by every server: run `fleet init` to move them there"
        )


def load_shared_keys(ctx: ServiceContext, *, initialising: bool, say: Say) -> Ed25519PrivateKey:
    """Every key the server signs with comes from the database; returns the envelope key."""
    keys = SharedKeys.of(ctx)
    if initialising:
        upgrade(ctx.db.engine)
        adopt_local_keys(ctx.settings, keys, say)
    else:
        refuse_local_keys(ctx.settings)
    try:
        return keys.envelope_key(create=initialising)
    except SQLAlchemyError as error:
        raise NotInitialisedError(
            f"the database has no table of shared keys ({error.__class__.__name__}): run "
            "`fleet init` to migrate it"
        ) from None


def build_services(
    settings: Settings,
    *,
    initialising: bool = False,
    listen_status: bool = True,
    say: Say = log.warning,
) -> Services:
    make_private_directory(settings.data_dir)
    create_private_database(settings.resolved_database_url)
    ctx = ServiceContext(
        db=Database(settings.resolved_database_url),
        settings=settings,
        hasher=SecretHasher(load_secret_key(settings, create=initialising)),
    )
    if not initialising:
        check_schema(ctx.db)
    envelope_key = load_shared_keys(ctx, initialising=initialising, say=say)
    return Services.build(ctx, envelope_key, listen_status=listen_status)


def initialise(settings: Settings, say: Say = log.warning) -> Services:
    """Create or migrate the database and create missing keys. Safe to run twice.

    The signing keys are made in the database once for every server sharing it; key files of
    an older data directory are moved there (``say`` tells each move). The data directory ends
    0700 with every file in it 0600, whatever the umask or an earlier run left."""
    services = build_services(settings, initialising=True, say=say)
    services.scope_maps.ensure_system_maps()
    services.signing.ring.prune()
    services.signing.write_bundle()
    tighten(settings.data_dir, settings.resolved_database_url)
    return services
