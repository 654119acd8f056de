"""The device's own key pairs and the server's signing key, kept in the state directory.

- ``device_x25519.key``: X25519 private key (PKCS#8 PEM), opens envelopes sealed to the device;
- ``device_ed25519.key``: Ed25519 private key (PKCS#8 PEM), signs what the device reports;
- ``server_ed25519.pub``: the server's Ed25519 public key, base64 of the 32 raw bytes, as
  received at enrollment; it verifies every envelope.

Private key files are created with mode 0600 through ``write_atomic`` (never ``chmod``-ed after
the write), never overwritten once they exist, and refused when group or others may read them.
Public keys are written as they travel (``device_agent.protocol.keys``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from device_agent.protocol.keys import InvalidPublicKey, ed25519_public_from_b64, public_key_b64
from device_agent.state.atomic import PRIVATE_MODE, write_atomic

X25519_FILE = "device_x25519.key"
ED25519_FILE = "device_ed25519.key"
SERVER_KEY_FILE = "server_ed25519.pub"
PUBLIC_MODE = 0o644
STATE_DIR_MODE = 0o700
MAX_KEY_FILE_BYTES = 4096

K = TypeVar("K", X25519PrivateKey, Ed25519PrivateKey)


class KeyFileError(Exception):
    """A key file that is missing, unreadable, too open or not a key of the expected type."""


@dataclass(frozen=True)
class DeviceKeys:
    x25519: X25519PrivateKey
    ed25519: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"DeviceKeys(x25519={self.x25519_public_b64}, ed25519={self.ed25519_public_b64})"

    @property
    def x25519_public_b64(self) -> str:
        return public_key_b64(self.x25519.public_key())

    @property
    def ed25519_public_b64(self) -> str:
        return public_key_b64(self.ed25519.public_key())


def server_key_from_b64(text: str) -> Ed25519PublicKey:
    """The server's signing key from its base64 text; ``KeyFileError`` when it is not one."""
    try:
        return ed25519_public_from_b64(text)
    except InvalidPublicKey as error:
        raise KeyFileError(str(error)) from None


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            raise KeyFileError(f"{path} must be a regular file readable by its owner only")
        return f.read(MAX_KEY_FILE_BYTES)


def _load_private(path: Path, kind: type[K]) -> K:
    try:
        key = load_pem_private_key(_read_private_file(path), password=None)
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path} does not hold an {kind.__name__}")
    return key


def _load_or_create(path: Path, kind: type[K]) -> K:
    try:
        return _load_private(path, kind)
    except FileNotFoundError:
        pass
    key = kind.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        write_atomic(path, pem, PRIVATE_MODE, overwrite=False)
    except FileExistsError:  # created meanwhile by another process: use that one
        return _load_private(path, kind)
    return key


def load_or_create_device_keys(state_dir: Path) -> DeviceKeys:
    """The device's key pairs, generating whichever does not exist yet."""
    os.makedirs(state_dir, mode=STATE_DIR_MODE, exist_ok=True)
    x25519 = _load_or_create(state_dir / X25519_FILE, X25519PrivateKey)
    ed25519 = _load_or_create(state_dir / ED25519_FILE, Ed25519PrivateKey)
    return DeviceKeys(x25519=x25519, ed25519=ed25519)


def load_device_keys(state_dir: Path) -> DeviceKeys:
    """The device's existing key pairs; ``KeyFileError`` if either is missing."""
    try:
        x25519 = _load_private(state_dir / X25519_FILE, X25519PrivateKey)
        ed25519 = _load_private(state_dir / ED25519_FILE, Ed25519PrivateKey)
    except FileNotFoundError as exc:
        raise KeyFileError(f"{exc.filename} is missing: enroll first") from None
    return DeviceKeys(x25519=x25519, ed25519=ed25519)


def save_server_public_key(state_dir: Path, key_b64: str) -> Ed25519PublicKey:
    """Keep the server's signing key received at enrollment (checked before it is written)."""
    key = server_key_from_b64(key_b64)
    os.makedirs(state_dir, mode=STATE_DIR_MODE, exist_ok=True)
    write_atomic(state_dir / SERVER_KEY_FILE, (public_key_b64(key) + "\n").encode(), PUBLIC_MODE)
    return key


def load_server_public_key(state_dir: Path) -> Ed25519PublicKey:
    path = state_dir / SERVER_KEY_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{path} is missing: enroll first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    return server_key_from_b64(text)
