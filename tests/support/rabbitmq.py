"""A RabbitMQ 3.10 node of the tests' own, with the MQTT plugin asking fleet over HTTP.

Everything of the node is its own, so nothing of the machine's RabbitMQ node (or its
configuration under /etc/rabbitmq) is read or touched: its node name, its ports (AMQP, MQTT,
distribution, management) and its epmd (started here, on a port of its own, and stopped with
the node), its data, log, configuration and enabled-plugins files in a temporary directory,
and its HOME there too (so its Erlang cookie is its own). ``rabbitmq-env.conf`` is pointed at an
empty file of ours, so the machine's ``NODENAME``/``ERL_FLAGS`` do not apply.

Usage::

    with RabbitMQ(auth_url="http://127.0.0.1:PORT/mqtt-auth/rabbitmq", ...) as node:
        node.mqtt_port, node.url, node.management_url
        node.restart()  # clean stop, start again: same ports, same data (retained messages)
        node.kill()     # SIGKILL of the node (the next start() recovers)

The configuration and plugins are ``deploy/rabbitmq/``'s (so the files we ship are the ones
tested) as one node: the device logins go through ``rabbitmq_auth_backend_cache`` in front of
``rabbitmq_auth_backend_http``, then the internal database, which holds only the management
user (``admin_username``) fleet closes connections with.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.ports import LOOPBACK
from tests.support.timing import scaled

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_SERVER = RABBITMQ_BIN / "rabbitmq-server"
RABBITMQCTL = RABBITMQ_BIN / "rabbitmqctl"
EPMD = "/usr/bin/epmd"
ADMIN_USERNAME = "fleet-test-admin"
ADMIN_PASSWORD_BYTES = 24
COOKIE_BYTES = 20
AUTH_SECRET_BYTES = 24
# Unscaled; every use goes through scaled().
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
CTL_TIMEOUT_S = 60.0
EPMD_START_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.1
DEFAULT_CACHE_TTL_MS = 2000
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "rabbitmq.conf"
SHIPPED_PLUGINS = SHIPPED_CONFIG.with_name("enabled_plugins")
SHIPPED_AUTH_PATH = "/mqtt-auth/rabbitmq/"
AUTH_QUESTIONS = ("user", "vhost", "resource", "topic")
# Options of the shipped file that a node of the tests sets itself.
REPLACED_PREFIXES = (
    "cluster_formation.",
    "cluster_partition_handling",
    "mqtt.listeners.",
    "listeners.",
    "management.tcp.",
    "auth_cache.cache_ttl",
)
START_ATTEMPTS = 3


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000
PORT_TRIES = 200


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def node_port() -> int:
    """A free port below the kernel's ephemeral range: the node keeps its ports over a
    restart, and a port of that range (what ``free_port`` hands out) may meanwhile be taken as
    the local end of any outgoing connection on a busy machine."""
    low, _high = _ephemeral_range()
    top = max(LOWEST_PORT + 1, low - 1)
    for _ in range(PORT_TRIES):
        port = LOWEST_PORT + secrets.randbelow(top - LOWEST_PORT)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST_PORT} and {top}")


def node_config(
    shipped: str,
    *,
    amqp_port: int,
    mqtt_port: int,
    management_port: int,
    auth_url: str,
    auth_secret: str,
    cache_ttl_ms: int,
) -> str:
    """The shipped ``deploy/rabbitmq/rabbitmq.conf`` (so the file we ship is the one tested),
    as one node on our ports: its cluster, listener and management lines replaced, its
    ``auth_http.*_path`` URLs pointed at ``auth_url`` with ``auth_secret``, the cache's TTL ours.
    """
    ours = [
        f"listeners.tcp.1 = {LOOPBACK}:{amqp_port}",
        f"mqtt.listeners.tcp.1 = {LOOPBACK}:{mqtt_port}",
        f"management.tcp.port = {management_port}",
        f"management.tcp.ip = {LOOPBACK}",
        f"auth_cache.cache_ttl = {cache_ttl_ms}",
        "loopback_users = none",
        "log.file.level = info",
        "log.console = false",
    ]
    lines: list[str] = []
    paths = 0
    for raw in shipped.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if key.startswith(REPLACED_PREFIXES):
            continue
        if key.startswith("auth_http.") and key.endswith("_path"):
            question = value.split(SHIPPED_AUTH_PATH, 1)[1].split("?", 1)[0]
            lines.append(f"{key} = {auth_url}/{question}?secret={auth_secret}")
            paths += 1
            continue
        lines.append(line)
    if paths != len(AUTH_QUESTIONS):
        raise ValueError(f"expected {len(AUTH_QUESTIONS)} auth_http paths, found {paths}")
    return "\n".join([*lines, *ours]) + "\n"


class RabbitMQ:
    """One RabbitMQ node, with its own epmd, in a temporary directory."""

    def __init__(
        self,
        *,
        auth_url: str,
        auth_secret: str | None = None,
        cache_ttl_ms: int = DEFAULT_CACHE_TTL_MS,
    ) -> None:
        """``auth_url``: fleet's RabbitMQ auth endpoints without the last part
        (``.../user``, ``/vhost``, ``/resource``, ``/topic`` are added); ``auth_secret`` (one
        is made when not given) is sent as the query parameter ``secret`` of each (as
        deploy/rabbitmq passes it)."""
        if auth_secret is None:
            auth_secret = secrets.token_urlsafe(AUTH_SECRET_BYTES)
        self.auth_secret = auth_secret
        self.host = LOOPBACK
        self.amqp_port = self.mqtt_port = self.dist_port = self.management_port = 0
        self.epmd_port = node_port()
        self.node_name = f"fleet-test-{secrets.token_hex(4)}@localhost"
        self.admin_username = ADMIN_USERNAME
        self.admin_password = secrets.token_urlsafe(ADMIN_PASSWORD_BYTES)
        self.cache_ttl_ms = cache_ttl_ms
        self._dir = Path(tempfile.mkdtemp(prefix="fleet-rabbitmq-"))
        self.home = self._dir / "home"
        self.config_file = self._dir / "rabbitmq.conf"
        self.log_dir = self._dir / "log"
        self._process: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._admin_made = False
        self.home.mkdir()
        self.log_dir.mkdir()
        (self._dir / "mnesia").mkdir()
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(COOKIE_BYTES))
        cookie.chmod(0o400)
        shutil.copyfile(SHIPPED_PLUGINS, self._dir / "enabled_plugins")
        (self._dir / "rabbitmq-env.conf").write_text("")
        self._auth_url = auth_url
        self._choose_ports()

    def _choose_ports(self) -> None:
        """Free ports for the node, written into its configuration (again on a retried first
        start: another program may take a port between ``node_port`` and the node's bind)."""
        self.amqp_port, self.mqtt_port = node_port(), node_port()
        self.dist_port, self.management_port = node_port(), node_port()
        self.config_file.write_text(
            node_config(
                SHIPPED_CONFIG.read_text(),
                amqp_port=self.amqp_port,
                mqtt_port=self.mqtt_port,
                management_port=self.management_port,
                auth_url=self._auth_url,
                auth_secret=self.auth_secret,
                cache_ttl_ms=self.cache_ttl_ms,
            )
        )

    # -- what fleet and the tests are told --------------------------------------------------

    @property
    def login_refusal_bound_s(self) -> float:
        """How long after a disable a reconnect may still be let in: the cache's TTL."""
        return self.cache_ttl_ms / 1000

    @property
    def port(self) -> int:
        return self.mqtt_port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def directory(self) -> Path:
        return self._dir

    def fleet_env(self) -> dict[str, str]:
        """The fleet server's configuration for this node (http mode, management API on)."""
        return {
            "FLEET_MQTT_URL": self.url,
            "FLEET_MQTT_AUTH": "http",
            "FLEET_MQTT_AUTH_SECRET": self.auth_secret,
            "FLEET_MQTT_MANAGEMENT_URL": self.management_url,
            "FLEET_MQTT_MANAGEMENT_USERNAME": self.admin_username,
            "FLEET_MQTT_MANAGEMENT_PASSWORD": self.admin_password,
            "FLEET_MQTT_AUTH_CACHE_TTL_SECONDS": str(-(-self.cache_ttl_ms // 1000)),
        }

    # -- the processes ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        return {
            **env,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_CONF_ENV_FILE": str(self._dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.config_file),
            "RABBITMQ_CONFIG_FILES": str(self._dir / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self._dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self._dir / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_SERVER_ERL_ARGS": "+S 1:1 +A 4",
        }

    def _start_epmd(self) -> None:
        if self._epmd is not None and self._epmd.poll() is None:
            return
        self._epmd = subprocess.Popen(
            [EPMD, "-port", str(self.epmd_port), "-address", LOOPBACK],
            env=self.env(),
            cwd=self._dir,  # an erl_crash.dump lands here, not in the caller's directory
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + scaled(EPMD_START_TIMEOUT_S)
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.epmd_port), timeout=1),
            ):
                return
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"epmd did not listen on port {self.epmd_port}")

    def start(self) -> RabbitMQ:
        """Start the node and wait for it; a first start that fails is tried again on fresh
        ports (a restart keeps its ports: the clients' URLs name them)."""
        if self.running:
            return self
        attempts = 1 if self._admin_made else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == attempts:
                    raise
                self._choose_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> RabbitMQ:
        self._start_epmd()
        with (self.log_dir / "server.out").open("ab") as out:
            self._process = subprocess.Popen(
                [str(RABBITMQ_SERVER)],
                env=self.env(),
                cwd=self._dir,  # an erl_crash.dump lands here, not in the caller's directory
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one on failure
            )
        try:
            self._await_startup()
            if not self._admin_made:
                self.ctl("add_user", self.admin_username, self.admin_password)
                self.ctl("set_user_tags", self.admin_username, "administrator")
                self.ctl("set_permissions", "-p", "/", self.admin_username, ".*", ".*", ".*")
                self._admin_made = True
        except BaseException:
            self.kill()
            raise
        return self

    def _await_startup(self) -> None:
        """``rabbitmqctl await_startup`` once the node is known to its epmd (before that the
        command fails at once), while the process lives, up to the start timeout."""
        deadline = time.monotonic() + scaled(START_TIMEOUT_S)
        while True:
            if not self.running:
                raise RuntimeError(f"rabbitmq-server exited at start:\n{self.log_text()[-4000:]}")
            try:
                self.ctl("await_startup", timeout_s=max(1.0, deadline - time.monotonic()))
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL_INTERVAL_S * 5)

    def ctl(self, *args: str, timeout_s: float = CTL_TIMEOUT_S) -> str:
        """``rabbitmqctl -n NODE ARGS`` against this node (never the machine's)."""
        done = subprocess.run(
            [str(RABBITMQCTL), "-n", self.node_name, *args],
            env=self.env(),
            cwd=self._dir,  # an erl_crash.dump lands here, not in the caller's directory
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=scaled(timeout_s),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args[:1])} failed ({done.returncode}): "
                f"{done.stderr.strip()}\n{self.log_text()[-4000:]}"
            )
        return done.stdout

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """``rabbitmqctl stop`` (a clean stop: messages and retained ones are kept); killed
        when that fails or takes too long."""
        if self._process is None:
            return
        if self._process.poll() is None:
            try:
                self.ctl("stop", timeout_s=STOP_TIMEOUT_S)
                self._process.wait(scaled(STOP_TIMEOUT_S))
            except (RuntimeError, subprocess.TimeoutExpired):
                self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL of the node's whole process group (beam and its helper programs)."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(scaled(STOP_TIMEOUT_S))
        self._reap()

    def _reap(self) -> None:
        """The node's group, should anything of it be left (inet_gethost, erl_child_setup)."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process = None

    def restart(self) -> RabbitMQ:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def cleanup(self) -> None:
        self.stop()
        if self._epmd is not None:
            if self._epmd.poll() is None:
                self._epmd.terminate()
                try:
                    self._epmd.wait(scaled(STOP_TIMEOUT_S))
                except subprocess.TimeoutExpired:
                    self._epmd.kill()
                    self._epmd.wait()
            self._epmd = None
        if os.environ.get("FLEET_KEEP_BROKER_DIR") is None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RabbitMQ:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
