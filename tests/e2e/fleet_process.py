"""A real fleet server, started the way a user starts it, and the ``fleet`` CLI as a subprocess.

::

    server = FleetServer(tmp_dir)  # or FleetServer(tmp_dir, database_url=POSTGRES_SCHEMA_URL)
    server.init()                 # fleet init
    server.create_api_key()       # fleet admin create-key --name e2e (last line is the key)
    server.start()                # fleet serve --port P --workers 2, waits for /healthz
    server.cli("token", "create", "--name", "MyToken", ...).json()
    server.stop()

Only this server's own variables reach the subprocesses: every inherited ``FLEET_*`` variable is
dropped, so a developer's shell cannot point a test at another database or server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.support.ports import LOOPBACK, free_port
from tests.support.timing import scaled, wait_until

# The `fleet` script installed beside this interpreter (the project's venv), else the PATH's.
_BESIDE_PYTHON = Path(sys.executable).with_name("fleet")
FLEET = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else (shutil.which("fleet") or "fleet")
WORKERS = 2
# Bounds on a failure, in seconds on this machine; each is scaled by FLEET_TEST_TIME_SCALE.
CLI_TIMEOUT_S = 60.0
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 1.0
LOG_TAIL_CHARS = 4000
API_KEY_NAME = "e2e"
# Every failed login in these tests comes from 127.0.0.1. The soft limiter (10 failures, then
# 429) is proven by tests/api/token_endpoint; here a 429 would only blur what the registry reports.
LOGIN_FAILURE_BURST = 10_000


class FleetProcessError(RuntimeError):
    pass


@dataclass(frozen=True)
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        if not self.ok:
            raise FleetProcessError(f"{' '.join(self.args)} failed:\n{self.stderr}")
        return json.loads(self.stdout)


class FleetServer:
    """One data directory, one database (``database_url``; empty: SQLite in the data directory),
    one ``fleet serve`` process, one API key."""

    def __init__(
        self,
        directory: Path,
        *,
        env: dict[str, str] | None = None,
        database_url: str = "",
        port: int | None = None,
    ) -> None:
        """``port``: the one to serve on (a broker told the URL first); a free one if None."""
        self.directory = Path(directory)
        self.data_dir = self.directory / "fleet-data"
        self.log_file = self.directory / "fleet-serve.log"
        self.host = LOOPBACK
        self.port = port or free_port()
        self.api_key = ""
        self._extra_env = {"FLEET_LOGIN_FAILURE_BURST": str(LOGIN_FAILURE_BURST), **(env or {})}
        if database_url:
            self._extra_env["FLEET_DATABASE_URL"] = database_url
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """gunicorn's master: it leads its own process group, the workers in it."""
        return self._process.pid if self._process is not None else None

    @property
    def realm(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def bundle(self) -> Path:
        """The registry's ``rootcertbundle``, as ``fleet init`` writes it."""
        return self.data_dir / "registry-bundle.pem"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env |= {
            "FLEET_DATA_DIR": str(self.data_dir),
            "FLEET_URL": self.url,
            "FLEET_PUBLIC_URL": self.url,  # what devices are told to reach
            **self._extra_env,
        }
        if self.api_key:
            env["FLEET_API_KEY"] = self.api_key
        return env

    def cli(self, *args: str, input: str | None = None) -> CliResult:
        """``fleet ARGS`` in a subprocess, with this server's URL, API key and data directory."""
        command = [FLEET, *args]
        done = subprocess.run(
            command,
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=scaled(CLI_TIMEOUT_S),
            check=False,
        )
        return CliResult(command, done.returncode, done.stdout, done.stderr)

    def cli_ok(self, *args: str) -> CliResult:
        result = self.cli(*args)
        if not result.ok:
            raise FleetProcessError(f"fleet {' '.join(args)} failed:\n{result.stderr}")
        return result

    def device_group(self, group: str, pattern: str = "edge/*") -> str:
        """A read-only scope map on ``pattern``, a device group on it, and an enrollment
        secret for it, through the CLI; returns the secret."""
        self.cli_ok(
            "scope-map",
            "create",
            "--name",
            f"{group}-read",
            "--repository",
            pattern,
            "content/read",
            "metadata/read",
        )
        self.cli_ok("group", "create", "--name", group, "--scope-map", f"{group}-read")
        made = self.cli_ok(
            "group", "secret", "create", "--name", group, "--query", "value", "--output", "tsv"
        )
        return made.stdout.strip()

    def init(self) -> None:
        self.cli_ok("init")
        if not self.bundle.exists():
            raise FleetProcessError(f"fleet init wrote no registry bundle at {self.bundle}")

    def create_api_key(self, name: str = API_KEY_NAME) -> str:
        lines = self.cli_ok("admin", "create-key", "--name", name).stdout.strip().splitlines()
        self.api_key = lines[-1].strip()
        return self.api_key

    def start(self, workers: int = WORKERS) -> None:
        """``fleet serve`` in the background; returns once ``/healthz`` answers."""
        self._spawn(workers)
        self._wait_until_healthy()

    def _spawn(self, workers: int) -> None:
        if self._process is not None:
            raise FleetProcessError("fleet serve is already running")
        command = [FLEET, "serve", "--host", self.host, "--port", str(self.port)]
        command += ["--workers", str(workers)]
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the workers go with it
            )

    def _healthy(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            self._process = None
            raise FleetProcessError(f"fleet serve exited at start:\n{self.log_tail()}")
        try:
            answer = requests.get(f"{self.url}/healthz", timeout=scaled(PROBE_TIMEOUT_S))
        except (requests.ConnectionError, requests.Timeout):  # still booting
            return False
        return answer.status_code == 200

    def _wait_until_healthy(self) -> None:
        try:
            wait_until(self._healthy, "fleet serve answers /healthz", timeout=START_TIMEOUT_S)
        except AssertionError as error:
            self.stop()
            raise FleetProcessError(f"{error}:\n{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM to gunicorn's master (it stops its workers); SIGKILL to the group if stuck."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=scaled(STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL to the whole process group, master and workers at once: a crash."""
        process, self._process = self._process, None
        if process is not None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]

    def __enter__(self) -> FleetServer:
        self.init()
        self._spawn(WORKERS)
        try:
            self.create_api_key()  # while gunicorn boots: the server reads keys per request
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
