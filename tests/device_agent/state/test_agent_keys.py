"""Device key files: created 0600 whatever the umask, reused, never overwritten, refused when
too open, and public keys exported as base64 of their raw bytes."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.protocol import keys as wire
from device_agent.state import keys
from device_agent.state.atomic import write_atomic
from device_agent.state.keys import KeyFileError


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0: any mode wider than 0600 would show."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_are_created_0600_even_with_umask_0(tmp_path: Path, permissive_umask: None) -> None:
    state = tmp_path / "state"
    keys.load_or_create_device_keys(state)
    assert mode(state) == 0o700
    assert mode(state / keys.X25519_FILE) == 0o600
    assert mode(state / keys.ED25519_FILE) == 0o600
    assert sorted(p.name for p in state.iterdir()) == [keys.ED25519_FILE, keys.X25519_FILE]


def test_keys_are_reused(tmp_path: Path) -> None:
    first = keys.load_or_create_device_keys(tmp_path)
    again = keys.load_or_create_device_keys(tmp_path)
    loaded = keys.load_device_keys(tmp_path)
    assert first.x25519_public_b64 == again.x25519_public_b64 == loaded.x25519_public_b64
    assert first.ed25519_public_b64 == again.ed25519_public_b64 == loaded.ed25519_public_b64
    assert first.x25519_public_b64 != first.ed25519_public_b64


def test_public_keys_are_base64_of_32_raw_bytes(tmp_path: Path) -> None:
    device = keys.load_or_create_device_keys(tmp_path)
    assert len(base64.b64decode(device.x25519_public_b64, validate=True)) == 32
    assert len(base64.b64decode(device.ed25519_public_b64, validate=True)) == 32
    back = wire.x25519_public_from_b64(device.x25519_public_b64)
    assert wire.public_key_b64(back) == device.x25519_public_b64
    assert "PRIVATE" not in repr(device)


def test_missing_keys_are_an_error_when_loading(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="enroll first"):
        keys.load_device_keys(tmp_path)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys.load_or_create_device_keys(tmp_path)
    os.chmod(tmp_path / keys.X25519_FILE, 0o640)
    with pytest.raises(KeyFileError, match="owner only"):
        keys.load_device_keys(tmp_path)


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    keys.load_or_create_device_keys(tmp_path / "real")
    (tmp_path / "state").mkdir()
    for name in (keys.X25519_FILE, keys.ED25519_FILE):
        (tmp_path / "state" / name).symlink_to(tmp_path / "real" / name)
    with pytest.raises(KeyFileError):
        keys.load_device_keys(tmp_path / "state")


def test_a_key_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    keys.load_or_create_device_keys(tmp_path)
    os.replace(tmp_path / keys.ED25519_FILE, tmp_path / keys.X25519_FILE)
    with pytest.raises(KeyFileError, match="X25519PrivateKey"):
        keys.load_or_create_device_keys(tmp_path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    write_atomic(tmp_path / keys.X25519_FILE, b"not a key")
    with pytest.raises(KeyFileError, match="not a PEM"):
        keys.load_or_create_device_keys(tmp_path)
    assert (tmp_path / keys.X25519_FILE).read_bytes() == b"not a key"


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "k"
    write_atomic(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_server_public_key_round_trip(tmp_path: Path) -> None:
    server = Ed25519PrivateKey.generate().public_key()
    text = wire.public_key_b64(server)
    keys.save_server_public_key(tmp_path, text)
    loaded = keys.load_server_public_key(tmp_path)
    assert wire.public_key_b64(loaded) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param(base64.b64encode(b"x" * 31).decode(), id="31-bytes"),
        pytest.param(base64.b64encode(b"x" * 33).decode(), id="33-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_server_keys_are_refused_before_writing(tmp_path: Path, text: str) -> None:
    with pytest.raises(KeyFileError):
        keys.save_server_public_key(tmp_path, text)
    assert not (tmp_path / keys.SERVER_KEY_FILE).exists()


def test_missing_server_key(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="enroll first"):
        keys.load_server_public_key(tmp_path)
