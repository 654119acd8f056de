"""The measured server: ``python -m bench.floor_server serve`` in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1
HTTP_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """``fleet serve`` plus the floor route; gunicorn's master leads its own process group."""

    def __init__(self, env: dict[str, str], workers: int, log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_file = log_file
        command = [sys.executable, "-m", "bench.floor_server", "serve"]
        command += ["--host", HOST, "--port", str(self.port), "--workers", str(workers)]
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def process_group(self) -> int:
        return self.process.pid

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_tail()}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{self.url}/healthz", timeout=HTTP_TIMEOUT_S).ok:
                    return
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"server not healthy in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
