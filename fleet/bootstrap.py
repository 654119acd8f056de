"""Wiring for a server host: settings -> database, keys and services. ``fleet init`` lives here."""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import serialization
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
from fleet.services import Services
from fleet.services.context import ServiceContext


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
    if settings.secret_key:
        key = _decode_key(settings.secret_key)
    elif settings.secret_key_file.exists():
        key = _decode_key(settings.secret_key_file.read_text())
    elif create:
        key = secrets.token_bytes(MIN_SECRET_KEY_BYTES)
        settings.secret_key_file.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(settings.secret_key_file, base64.b64encode(key) + b"\n")
    else:
        raise NotInitialisedError(
            f"no secret key: run `fleet init` (it writes {settings.secret_key_file}) "
            "or set FLEET_SECRET_KEY"
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


def load_envelope_key(settings: Settings, *, create: bool = False) -> Ed25519PrivateKey:
    """The Ed25519 key that signs envelopes; every server of a cluster must share it."""
    path = settings.envelope_key_file
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise FleetError(f"{path} does not hold an Ed25519 private key")
        return key
    if not create:
        raise NotInitialisedError(f"no envelope signing key: run `fleet init` (it writes {path})")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, pem)
    return key


def build_services(
    settings: Settings, *, initialising: bool = False, listen_status: bool = True
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
    return Services.build(
        ctx, load_envelope_key(settings, create=initialising), listen_status=listen_status
    )


def initialise(settings: Settings) -> Services:
    """Create or migrate the database and create missing keys. Safe to run twice.

    The data directory ends 0700 with every file in it 0600, whatever the umask or an earlier
    run left."""
    services = build_services(settings, initialising=True)
    upgrade(services.ctx.db.engine)
    services.scope_maps.ensure_system_maps()
    services.signing.ring.prune()
    services.signing.write_bundle()
    tighten(settings.data_dir, settings.resolved_database_url)
    return services
