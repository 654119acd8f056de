"""The server-host commands as a new user runs them: init twice, create a key, serve, on SQLite
and on a fresh PostgreSQL schema."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.ports import free_port
from tests.support.postgres import DATABASES, count_rows, server_database_url
from tests.support.timing import scaled, wait_until

FLEET = [sys.executable, "-m", "fleet"]
# Unscaled bounds on a failure.
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 1.0
SECRET_KEY = base64.b64encode(b"server-host-test-secret-of-32-bytes+").decode()


def _env(data_dir: Path, database_url: str = "", **more: str) -> dict[str, str]:
    """This test's data directory and database only: a developer's FLEET_* are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_DATA_DIR"] = str(data_dir)
    if database_url:
        env["FLEET_DATABASE_URL"] = database_url
    return {**env, **more}


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server's database: "" (SQLite in the data directory) or a fresh PostgreSQL schema."""
    with server_database_url(request.param) as url:
        yield url


def test_init_create_key_and_serve(tmp_path: Path, database_url: str) -> None:
    env = _env(tmp_path / "data", database_url)
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
    port = free_port()
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
        if database_url:  # what it listed came from the schema, not from a file beside it
            assert count_rows(database_url, "scope_maps") == len(listed.stdout.split())
    finally:
        server.terminate()
        server.wait(scaled(STOP_TIMEOUT_S))


def test_commands_needing_init_say_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FLEET, "admin", "create-key", "--name", "x"],
        env=_env(tmp_path / "empty"),
        capture_output=True,
        text=True,
        timeout=scaled(COMMAND_TIMEOUT_S),
    )
    assert done.returncode == 1
    assert "fleet init" in done.stderr


def test_a_database_init_has_not_prepared_is_refused(tmp_path: Path, database_url: str) -> None:
    """With a secret key but an empty database, the server-host commands say to run init."""
    env = _env(tmp_path / "data", database_url, FLEET_SECRET_KEY=SECRET_KEY)
    done = subprocess.run(
        [*FLEET, "admin", "create-key", "--name", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(COMMAND_TIMEOUT_S),
    )
    assert done.returncode == 1
    assert "has no fleet schema: run `fleet init`" in done.stderr
