"""A real mosquitto 2 broker with dynamic security, started in a temporary directory.

The configuration is ``deploy/mosquitto/mosquitto.conf`` (so the file we ship is the one tested)
with the listener address, file locations, autosave interval and log destination replaced.

Usage::

    with Mosquitto() as broker:
        broker.host, broker.port, broker.admin_username, broker.admin_password
        broker.kill()      # SIGKILL: nothing is saved beyond what is already on disk
        broker.restart()   # same port, same dynsec file, same persistence directory
        broker.stop()      # clean stop: mosquitto writes its persistence file

The dynsec file is created with ``mosquitto_ctrl dynsec init FILE USER PASSWORD``: giving the
password as the third argument keeps the tool from prompting, so no terminal is needed.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fleet.mqtt.broker_url import BrokerAddress
from fleet.mqtt.connection import Connection, unique_client_id
from fleet.mqtt.errors import BrokerUnavailableError
from tests.support.ports import LOOPBACK, free_port
from tests.support.timing import scaled

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_CTRL = "/usr/bin/mosquitto_ctrl"
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
# Options of the shipped file that the tests set themselves.
REPLACED_OPTIONS = frozenset(
    {
        "plugin_opt_config_file",
        "persistence_location",
        "autosave_interval",
        "log_dest",
        "user",
        "pid_file",
    }
)
ADMIN_USERNAME = "fleet-admin"
ADMIN_PASSWORD_BYTES = 24
# Unscaled; every use goes through scaled() so a slower machine gets longer.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
DYNSEC_FILE = "dynamic-security.json"
LOG_FILE = "mosquitto.log"
# The commented-out TLS listener block of the shipped file, switched on by ``tls=``.
_TLS_BLOCK_LINE = re.compile(r"#(listener 8883|cafile|certfile|keyfile|tls_version)\b")
TLS_BLOCK_LINES = 5
# Long enough that no autosave happens during a test: what survives a SIGKILL is then only what
# mosquitto wrote on a clean stop (and the dynsec file, which it rewrites on every change).
DEFAULT_AUTOSAVE_INTERVAL_S = 1800


@dataclass(frozen=True)
class TlsFiles:
    cafile: Path
    certfile: Path
    keyfile: Path


def _tls_lines(shipped: str, tls: TlsFiles, tls_port: int) -> list[str]:
    """The shipped TLS block uncommented, as its instructions say, with our port and files."""
    replace = {
        "listener": f"listener {tls_port} {LOOPBACK}",
        "cafile": f"cafile {tls.cafile}",
        "certfile": f"certfile {tls.certfile}",
        "keyfile": f"keyfile {tls.keyfile}",
    }
    lines = []
    for raw in shipped.splitlines():
        found = _TLS_BLOCK_LINE.match(raw.strip())
        if found:
            option = found.group(1).split()[0]
            lines.append(replace.get(option, raw.strip()[1:]))
    if len(lines) != TLS_BLOCK_LINES:
        raise ValueError(f"expected the {TLS_BLOCK_LINES}-line TLS block, found {len(lines)}")
    return lines


def broker_config(
    shipped: str,
    *,
    port: int,
    directory: Path,
    autosave_interval_s: int,
    tls: TlsFiles | None = None,
    tls_port: int = 0,
) -> str:
    """The shipped configuration, moved to our port and directory (and TLS switched on)."""
    ours = {
        "plugin_opt_config_file": f"plugin_opt_config_file {directory / DYNSEC_FILE}",
        "persistence_location": f"persistence_location {directory}/",
        "autosave_interval": f"autosave_interval {autosave_interval_s}",
        "log_dest": f"log_dest file {directory / LOG_FILE}",
        # As root, mosquitto would switch to the 'mosquitto' user and then could not write its
        # files here; naming the current user keeps it as it is.
        "user": f"user {getpass.getuser()}",
    }
    lines: list[str] = []
    listeners = 0
    for raw in shipped.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        option = line.split()[0]
        if option == "listener":
            listeners += 1
            lines.append(f"listener {port} {LOOPBACK}")
        elif option not in REPLACED_OPTIONS:
            lines.append(line)
    if listeners != 1:
        raise ValueError(f"expected one active listener in the shipped config, found {listeners}")
    if tls is not None:
        lines.extend(_tls_lines(shipped, tls, tls_port))
    return "\n".join([*lines, *ours.values()]) + "\n"


class Mosquitto:
    """One mosquitto process with its own port, dynsec file, persistence and log."""

    def __init__(
        self,
        *,
        autosave_interval_s: int = DEFAULT_AUTOSAVE_INTERVAL_S,
        tls: TlsFiles | None = None,
    ) -> None:
        """``tls``: also open the shipped TLS listener, on ``tls_port``, with these files."""
        self.host = LOOPBACK
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.admin_username = ADMIN_USERNAME
        self.admin_password = secrets.token_urlsafe(ADMIN_PASSWORD_BYTES)
        self._autosave_interval_s = autosave_interval_s
        self._dir = Path(tempfile.mkdtemp(prefix="fleet-mosquitto-"))
        self.dynsec_file = self._dir / DYNSEC_FILE
        self.config_file = self._dir / "mosquitto.conf"
        self.log_file = self._dir / LOG_FILE
        self._process: subprocess.Popen[bytes] | None = None
        self._init_dynsec()
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    # Dynamic security refuses a disabled login at once.
    login_refusal_bound_s = 0.0

    def fleet_env(self) -> dict[str, str]:
        """The fleet server's configuration for this broker."""
        return {
            "FLEET_MQTT_URL": self.url,
            "FLEET_MQTT_ADMIN_USERNAME": self.admin_username,
            "FLEET_MQTT_ADMIN_PASSWORD": self.admin_password,
        }

    @property
    def directory(self) -> Path:
        return self._dir

    def _init_dynsec(self) -> None:
        subprocess.run(
            [
                MOSQUITTO_CTRL,
                "dynsec",
                "init",
                str(self.dynsec_file),
                self.admin_username,
                self.admin_password,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=scaled(START_TIMEOUT_S),
        )

    def _write_config(self) -> None:
        config = broker_config(
            SHIPPED_CONFIG.read_text(),
            port=self.port,
            directory=self._dir,
            autosave_interval_s=self._autosave_interval_s,
            tls=self.tls,
            tls_port=self.tls_port,
        )
        self.config_file.write_text(config)

    def start(self) -> Mosquitto:
        if self.running:
            return self
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + scaled(START_TIMEOUT_S)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_text()}")
            if self._admin_can_connect():
                return
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"mosquitto not ready on port {self.port}:\n{self.log_text()}")

    def _admin_can_connect(self) -> bool:
        """True once an MQTT CONNECT with the admin login is accepted (dynsec is loaded)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=POLL_INTERVAL_S * 10):
                pass
        except OSError:
            return False
        connection = Connection(
            BrokerAddress(self.host, self.port),
            self.admin_username,
            self.admin_password,
            client_id=unique_client_id("ready"),
        )
        try:
            connection.start(scaled(START_TIMEOUT_S) / 4)
        except BrokerUnavailableError:
            return False  # start() has stopped it
        connection.stop()
        return True

    def kill(self) -> None:
        """SIGKILL: the broker gets no chance to save anything."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(scaled(STOP_TIMEOUT_S))
        self._process = None

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its in-memory state (retained messages) first."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(scaled(STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(scaled(STOP_TIMEOUT_S))
        self._process = None

    def restart(self) -> Mosquitto:
        """Start again on the same port with the same files (after kill() or stop())."""
        self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("FLEET_KEEP_BROKER_DIR") is None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
