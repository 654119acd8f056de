"""A real CNCF Distribution 2.8 registry with token auth, started in a temporary directory.

The configuration is ``deploy/registry/config.yml`` (so the file we ship is the one tested) with
the address, storage directory and ``auth: token:`` section replaced::

    with Registry(realm=..., service="fleet-registry", issuer="fleet",
                  rootcertbundle=bundle_path) as registry:
        registry.host_port        # "127.0.0.1:PORT" for skopeo's docker:// references
        registry.restart()        # same port and storage; rereads the rootcertbundle

The registry reads its ``rootcertbundle`` only when it starts: rewrite it, then ``restart()``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from fleet.registry_auth.config import auth_section
from tests.support.ports import LOOPBACK, free_port
from tests.support.timing import scaled

REGISTRY_BINARY = "/usr/bin/docker-registry"
DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "config.yml"
# Unscaled; every use goes through scaled() so a slower machine gets longer.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 1.0
HTTP_SECRET_BYTES = 24
LOG_TAIL_CHARS = 4000
# Distribution lets REGISTRY_* variables override the file; keep the test's config authoritative.
_OVERRIDE_PREFIX = "REGISTRY_"


class RegistryStartError(RuntimeError):
    pass


class Registry:
    """One ``docker-registry serve CONFIG`` process on its own loopback port and storage."""

    def __init__(
        self,
        *,
        realm: str,
        service: str,
        issuer: str,
        rootcertbundle: Path,
        directory: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.host = LOOPBACK
        self.port = port or free_port()
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="fleet-registry-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.directory / "data"
        self.config_file = self.directory / "config.yml"
        self.log_file = self.directory / "registry.log"
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.rootcertbundle = Path(rootcertbundle)
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load(DEPLOY_CONFIG.read_text(encoding="utf-8"))
        config["http"]["addr"] = self.host_port
        config["http"]["secret"] = secrets.token_urlsafe(HTTP_SECRET_BYTES)
        config["storage"]["filesystem"]["rootdirectory"] = str(self.data_dir)
        config.update(auth_section(self.realm, self.service, self.issuer, str(self.rootcertbundle)))
        return config

    def _write_config(self) -> None:
        self.config_file.write_text(yaml.safe_dump(self.config()), encoding="utf-8")

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("registry already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OVERRIDE_PREFIX)}
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + scaled(START_TIMEOUT_S)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._process = None
                raise RegistryStartError(f"registry exited at start:\n{self.log_tail()}")
            try:
                requests.get(f"{self.url}/v2/", timeout=scaled(PROBE_TIMEOUT_S))
                return
            except requests.ConnectionError:
                time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise RegistryStartError(
            f"registry did not answer in {scaled(START_TIMEOUT_S):g} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=scaled(STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start on the same port and storage; the bundle is read again."""
        self.stop()
        self.start()

    def log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]

    def close(self) -> None:
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
