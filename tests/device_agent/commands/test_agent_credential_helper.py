"""``docker-credential-fleet`` speaks the Docker credential helper protocol over the store:
``get`` answers for the device's registry only, with the current (proven) password, read fresh
on every call; ``store`` and ``erase`` are refused; nothing else is ever printed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_agent.commands.credential_helper import NOT_FOUND, normalize_server, run
from device_agent.state.credentials import Credentials
from device_agent.state.store import FILENAME, CredentialStore

SERVER = "registry.example:5000"


def credentials(version: int, password: str) -> Credentials:
    return Credentials(
        login_server=SERVER,
        username="dev-rpi-0001",
        password=password,
        slot="password1",
        expiry=datetime(2027, 1, 1, tzinfo=UTC),
        version=version,
    )


def helper(_state_dir: Path, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the helper in-process; the state directory comes from the environment."""
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), io.StringIO(stdin), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def state_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_STATE_DIR", str(tmp_path))


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    store = CredentialStore(tmp_path)
    store.stage(credentials(1, "first-password"))
    store.promote()
    return store


@pytest.mark.parametrize(
    "asked", [SERVER, f"https://{SERVER}", f"http://{SERVER}/v2/", f"  {SERVER.upper()}\n"]
)
def test_get_answers_for_the_devices_registry(store, tmp_path: Path, asked: str) -> None:
    code, out, _ = helper(tmp_path, "get", stdin=asked)
    assert code == 0
    assert json.loads(out) == {
        "ServerURL": asked.strip(),
        "Username": "dev-rpi-0001",
        "Secret": "first-password",
    }


def test_get_reads_the_store_fresh_so_a_rotation_needs_no_login(store, tmp_path: Path) -> None:
    store.stage(credentials(2, "second-password"))
    assert json.loads(helper(tmp_path, "get", stdin=SERVER)[1])["Secret"] == "first-password"
    store.promote()  # only a proven password is handed out
    assert json.loads(helper(tmp_path, "get", stdin=SERVER)[1])["Secret"] == "second-password"


@pytest.mark.parametrize("asked", ["other.example:5000", "registry.example", "", "https://"])
def test_get_for_another_registry_is_not_found(store, tmp_path: Path, asked: str) -> None:
    assert helper(tmp_path, "get", stdin=asked) == (1, NOT_FOUND + "\n", "")


def test_get_after_a_wipe_or_with_a_corrupt_store_is_not_found(store, tmp_path: Path) -> None:
    store.wipe()
    assert helper(tmp_path, "get", stdin=SERVER)[:2] == (1, NOT_FOUND + "\n")
    (tmp_path / FILENAME).write_text("{torn")
    code, out, err = helper(tmp_path, "get", stdin=SERVER)
    assert (code, out) == (1, NOT_FOUND + "\n") and "cannot read the credential store" in err


@pytest.mark.parametrize("action", ["store", "erase"])
def test_store_and_erase_are_refused_politely(store, tmp_path: Path, action: str) -> None:
    request = json.dumps({"ServerURL": SERVER, "Username": "u", "Secret": "s"})
    code, out, _ = helper(tmp_path, action, stdin=request)
    assert code == 1 and "fleet-agent manages the credentials" in out
    assert json.loads(helper(tmp_path, "get", stdin=SERVER)[1])["Secret"] == "first-password"


def test_list_version_and_usage(store, tmp_path: Path) -> None:
    code, out, _ = helper(tmp_path, "list")
    assert code == 0 and json.loads(out) == {SERVER: "dev-rpi-0001"}
    assert "first-password" not in out
    assert helper(tmp_path, "version")[0] == 0
    assert helper(tmp_path)[0] == 1 and "usage" in helper(tmp_path)[2]


def test_normalize_server() -> None:
    assert normalize_server("HTTPS://Registry.Example:5000/v2/x") == "registry.example:5000"


def test_the_program_speaks_over_stdin_and_stdout(store, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "device_agent.commands.credential_helper", "get"],
        input=SERVER,
        capture_output=True,
        text=True,
        env={"FLEET_AGENT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Secret"] == "first-password"
