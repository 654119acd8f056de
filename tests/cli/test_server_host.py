"""The server-host commands as a new user runs them: init twice, create a key, serve."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.timing import scaled, wait_until

FLEET = [sys.executable, "-m", "fleet"]
# Unscaled bounds on a failure.
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_init_create_key_and_serve(tmp_path: Path) -> None:
    env = {**os.environ, "FLEET_DATA_DIR": str(tmp_path / "data")}
    env.pop("FLEET_DATABASE_URL", None)
    env.pop("FLEET_SECRET_KEY", None)
    for _ in range(2):  # safe to run twice
        done = subprocess.run(
            [*FLEET, "init"],
            env=env,
            capture_output=True,
            text=True,
            timeout=scaled(COMMAND_TIMEOUT_S),
        )
        assert done.returncode == 0, done.stderr
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    made = subprocess.run(
        [*FLEET, "admin", "create-key", "--name", "ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(COMMAND_TIMEOUT_S),
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("flta_")
    port = _free_port()
    server = subprocess.Popen(
        [*FLEET, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                probe = requests.get(f"{url}/healthz", timeout=scaled(PROBE_TIMEOUT_S))
            except (requests.ConnectionError, requests.Timeout):
                return False
            return probe.status_code == 200

        wait_until(healthy, "fleet serve answers /healthz", timeout=START_TIMEOUT_S)
        listed = subprocess.run(
            [*FLEET, "scope-map", "list", "--output", "tsv", "--query", "[].name"],
            env={**env, "FLEET_URL": url, "FLEET_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=scaled(COMMAND_TIMEOUT_S),
        )
        assert listed.returncode == 0, listed.stderr
        assert "_repositories_pull" in listed.stdout.split()
    finally:
        server.terminate()
        server.wait(scaled(STOP_TIMEOUT_S))


def test_commands_needing_init_say_so(tmp_path: Path) -> None:
    env = {**os.environ, "FLEET_DATA_DIR": str(tmp_path / "empty")}
    env.pop("FLEET_SECRET_KEY", None)
    done = subprocess.run(
        [*FLEET, "admin", "create-key", "--name", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(COMMAND_TIMEOUT_S),
    )
    assert done.returncode == 1
    assert "fleet init" in done.stderr
