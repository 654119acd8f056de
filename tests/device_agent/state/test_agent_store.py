"""The credential store: slots, versions, file mode, and refusal of any file that does not
check out."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from device_agent.state.atomic import temp_files, write_atomic
from device_agent.state.credentials import Credentials, InvalidCredentials
from device_agent.state.store import (
    FILENAME,
    CredentialStore,
    StoreCorrupt,
    StoreError,
    StoreState,
    encode_state,
    load_state,
)

EXPIRY = datetime(2026, 2, 1, tzinfo=UTC)


def cred(version: int, password: str | None = None) -> Credentials:
    return Credentials(
        login_server="registry.example:5000",
        username="device-a",
        password=password or f"pw-{version}",
        slot="password1" if version % 2 else "password2",
        expiry=EXPIRY,
        version=version,
    )


def test_empty_store(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "state")
    assert (store.current(), store.previous(), store.staged()) == (None, None, None)
    assert store.last_version() == 0
    assert load_state(tmp_path / "state") == StoreState()
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


def test_stage_keeps_current_until_promoted(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(cred(1))
    store.promote()
    store.stage(cred(2))
    assert store.current() == cred(1)
    assert store.staged() == cred(2)
    assert store.last_version() == 2
    assert load_state(tmp_path) == store.state

    assert store.promote() == cred(2)
    assert (store.current(), store.previous(), store.staged()) == (cred(2), cred(1), None)
    reopened = CredentialStore(tmp_path)
    assert reopened.state == store.state


def test_versions_only_grow(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(cred(3))
    for version in (3, 2):
        with pytest.raises(StoreError, match="not newer"):
            store.stage(cred(version))
    store.discard_staged()
    assert store.staged() is None
    assert store.last_version() == 3
    with pytest.raises(StoreError, match="not newer"):
        store.stage(cred(3))


def test_promote_needs_something_staged(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing staged"):
        CredentialStore(tmp_path).promote()


def test_wipe_forgets_credentials_but_not_versions(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(cred(1))
    store.promote()
    store.stage(cred(2))
    store.record_version("command", 7)
    store.wipe()
    state = CredentialStore(tmp_path).state
    assert (state.current, state.previous, state.staged) == (None, None, None)
    assert state.versions == {"credentials": 2, "command": 7}
    assert "pw-" not in (tmp_path / FILENAME).read_text()


def test_command_versions_are_kept_apart(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.record_version("command", 4)
    assert store.last_version("command") == 4
    assert store.last_version() == 0
    with pytest.raises(StoreError):
        store.record_version("command", 4)


def test_file_is_0600_even_with_umask_0_and_over_a_wider_file(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(encode_state(StoreState()))
    os.chmod(tmp_path / FILENAME, 0o644)
    old = os.umask(0)
    try:
        CredentialStore(tmp_path).stage(cred(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / FILENAME).st_mode) == 0o600


def test_stale_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    target = tmp_path / FILENAME
    leftovers = [tmp_path / f".{FILENAME}.{n}.tmp" for n in ("0123", "abcd")]
    for leftover in leftovers:
        leftover.write_bytes(b'{"body": ')
    unrelated = tmp_path / "other.tmp"
    unrelated.write_bytes(b"keep")
    assert temp_files(target) == sorted(leftovers)
    store = CredentialStore(tmp_path)
    assert store.stale_temps_removed == 2
    assert temp_files(target) == []
    assert unrelated.exists()


def test_password_never_in_repr(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.stage(cred(1, password="hunter2-very-secret"))
    store.promote()
    store.stage(cred(2, password="hunter3-very-secret"))
    for text in (repr(store.state), str(store.current()), repr(store.staged())):
        assert "very-secret" not in text


# --- a file that does not check out is never taken as valid --------------------------------


def valid_file(tmp_path: Path) -> bytes:
    store = CredentialStore(tmp_path)
    store.stage(cred(1))
    store.promote()
    store.stage(cred(2))
    return (tmp_path / FILENAME).read_bytes()


def with_checksum(body: Any) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({"body": body, "sha256": hashlib.sha256(canonical).hexdigest()}).encode()


def test_every_truncation_is_corrupt(tmp_path: Path) -> None:
    data = valid_file(tmp_path)
    for length in range(1, len(data)):
        write_atomic(tmp_path / FILENAME, data[:length])
        with pytest.raises(StoreCorrupt):
            load_state(tmp_path)


def test_every_flipped_byte_is_corrupt(tmp_path: Path) -> None:
    data = valid_file(tmp_path)
    for index in range(len(data)):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        write_atomic(tmp_path / FILENAME, bytes(tampered))
        with pytest.raises(StoreCorrupt):
            load_state(tmp_path)


def test_a_corrupt_file_stops_the_writer_too(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"")
    with pytest.raises(StoreCorrupt):
        CredentialStore(tmp_path)


def good_body() -> dict[str, Any]:
    return {
        "format": 1,
        "current": cred(1).to_record(),
        "previous": None,
        "staged": None,
        "versions": {"credentials": 1},
    }


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff", id="not-utf8"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"body": {}}', id="no-checksum"),
        pytest.param(json.dumps({"body": good_body(), "sha256": "0" * 64}).encode(), id="bad-sum"),
        pytest.param(with_checksum({**good_body(), "format": 2}), id="unknown-format"),
        pytest.param(with_checksum({**good_body(), "current": "x"}), id="slot-not-object"),
        pytest.param(
            with_checksum({**good_body(), "current": {**cred(1).to_record(), "slot": "p3"}}),
            id="bad-slot",
        ),
        pytest.param(
            with_checksum({**good_body(), "current": {**cred(1).to_record(), "password": ""}}),
            id="empty-password",
        ),
        pytest.param(
            with_checksum({**good_body(), "current": {**cred(1).to_record(), "version": "1"}}),
            id="version-string",
        ),
        pytest.param(with_checksum({**good_body(), "versions": {"credentials": -1}}), id="neg"),
        pytest.param(with_checksum({**good_body(), "versions": []}), id="versions-list"),
        pytest.param(with_checksum([1]), id="body-list"),
        pytest.param(b"{" * 2 + b" " * (1024 * 1024), id="too-large"),
    ],
)
def test_corrupt_files(tmp_path: Path, data: bytes) -> None:
    write_atomic(tmp_path / FILENAME, data)
    with pytest.raises(StoreCorrupt):
        load_state(tmp_path)


def test_a_hand_written_valid_file_loads(tmp_path: Path) -> None:
    write_atomic(tmp_path / FILENAME, with_checksum(good_body()))
    assert load_state(tmp_path).current == cred(1)


# --- credentials ---------------------------------------------------------------------------


def test_credentials_from_payload() -> None:
    payload = {
        "kind": "credentials",
        "login_server": "registry.example:5000",
        "username": "device-a",
        "password": "pw",
        "slot": "password2",
        "expiry": "2026-02-01T01:00:00+01:00",
    }
    got = Credentials.from_payload(payload, 9)
    assert got.expiry == datetime(2026, 2, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert got.version == 9
    assert Credentials.from_payload(got.to_payload(), 9) == got
    assert Credentials.from_payload({**payload, "expiry": None}, 1).expiry is None


@pytest.mark.parametrize(
    ("change", "version"),
    [
        pytest.param({"password": ""}, 1, id="empty-password"),
        pytest.param({"password": None}, 1, id="no-password"),
        pytest.param({"username": 5}, 1, id="username-not-string"),
        pytest.param({"login_server": "x" * 1025}, 1, id="too-long"),
        pytest.param({"slot": "password3"}, 1, id="bad-slot"),
        pytest.param({"expiry": "2026-02-01T00:00:00"}, 1, id="naive-expiry"),
        pytest.param({"expiry": "tomorrow"}, 1, id="not-iso"),
        pytest.param({"expiry": 1234}, 1, id="expiry-number"),
        pytest.param({}, 0, id="version-zero"),
        pytest.param({}, True, id="version-bool"),
    ],
)
def test_invalid_credentials(change: dict[str, Any], version: int) -> None:
    payload = {**cred(1).to_payload(), **change}
    with pytest.raises(InvalidCredentials):
        Credentials.from_payload(payload, version)
