"""``fleet init`` under umask 022: the data directory is 0700 and every file in it 0600, the
SQLite ``-wal`` and ``-shm`` included, and ``fleet serve`` keeps it so (issue 12, defect 13)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.e2e.cli.test_server_host import COMMAND_TIMEOUT_S, PROBE_TIMEOUT_S, START_TIMEOUT_S, _env
from tests.support.ports import free_port
from tests.support.timing import scaled, wait_until

FLEET = [sys.executable, "-m", "fleet"]


def _umask_022() -> None:
    os.umask(0o022)


def _fleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*FLEET, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(COMMAND_TIMEOUT_S),
        preexec_fn=_umask_022,
    )
    assert done.returncode == 0, done.stderr
    return done


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _loose(root: Path) -> dict[str, str]:
    """Every entry whose mode lets group or others in: directories 0700, files 0600."""
    out = {}
    for name, mode in _modes(root).items():
        want = 0o700 if (root / name).is_dir() else 0o600
        if mode != want:
            out[name] = oct(mode)
    return out


def test_init_makes_the_data_directory_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    _fleet(env, "init")
    names = set(_modes(data))
    assert {"fleet.db", "secret.key", "registry-bundle.pem"} <= names
    # The signing keys are the database's (sealed), not files of the data directory.
    assert not names & {"envelope-signing.key", "signing-keys", "signing-keys/keyring.json"}
    assert _loose(data) == {}
    # sqlite keeps -wal and -shm while a connection is open: open one and look again
    _fleet(env, "admin", "create-key", "--name", "ops")
    assert _loose(data) == {}


def test_init_tightens_an_existing_open_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "fleet.db").touch(mode=0o644)
    (data / "fleet.db").chmod(0o644)
    _fleet(_env(data), "init")
    assert _loose(data) == {}


def test_serve_keeps_the_wal_and_the_lock_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data, FLEET_SCHEDULER_INTERVAL_SECONDS="1")
    _fleet(env, "init")
    port = free_port()
    server = subprocess.Popen(
        [*FLEET, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_umask_022,
    )
    try:

        def healthy() -> bool:
            try:
                probe = requests.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=scaled(PROBE_TIMEOUT_S)
                )
            except (requests.ConnectionError, requests.Timeout):
                return False
            return probe.status_code == 200

        wait_until(healthy, "fleet serve answers /healthz", timeout=START_TIMEOUT_S)
        wait_until(
            lambda: (data / "scheduler.lock").exists() and (data / "fleet.db-wal").exists(),
            "the scheduler took its lock and sqlite its WAL",
            timeout=START_TIMEOUT_S,
        )
        assert _loose(data) == {}
    finally:
        server.terminate()
        server.wait(scaled(COMMAND_TIMEOUT_S))
