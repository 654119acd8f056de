"""Pull with docker or podman. Neither is given a password: both are pointed at an auth file
whose ``credHelpers`` names ``fleet`` for the device's registry, so they run
``docker-credential-fleet get``, which reads the credential store at that moment. A rotation
therefore needs no ``docker login``, and other tools on the device can use the same helper.

- docker: ``DOCKER_CONFIG=<state>/docker`` (its ``config.json``), ``docker pull [--platform]``,
  then the digest from ``docker image inspect`` (``RepoDigests``);
- podman: ``podman pull --authfile <state>/containers-auth.json --tls-verify=...``, then
  ``podman image inspect`` (``Digest``).

The helper must be on ``PATH``: the directory of the running ``fleet-agent`` is put first.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import threading
from pathlib import Path

from device_agent.pull.auth_file import helper_document
from device_agent.pull.backend import PullFailed, PullRequest, looks_like_auth_failure
from device_agent.pull.child import ChildResult, run_child
from device_agent.state.atomic import write_atomic

HELPER_NAME = "fleet"
HELPER_PROGRAM = f"docker-credential-{HELPER_NAME}"
DOCKER_CONFIG_DIR = "docker"
PODMAN_AUTH_FILE = "containers-auth.json"
STATE_DIR_ENV = "FLEET_AGENT_STATE_DIR"
INSPECT_TIMEOUT_S = 30.0
MAX_ERROR_CHARS = 400
# docker answers a refused login by prompting for one ("Login prior to pull:"): stop it there.
LOGIN_PROMPT_MARKERS = ("login prior to",)
CONFIG_MODE = 0o600


def helper_directories() -> list[str]:
    """Where ``docker-credential-fleet`` may live: beside the running program, the scripts
    directory of this Python (a venv's bin)."""
    found = []
    for candidate in (Path(sys.argv[0]).resolve().parent, Path(sysconfig.get_path("scripts"))):
        if (candidate / HELPER_PROGRAM).exists() and str(candidate) not in found:
            found.append(str(candidate))
    return found


def child_environment(state_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join([*helper_directories(), os.environ.get("PATH", os.defpath)])
    return {**os.environ, "PATH": path, STATE_DIR_ENV: str(state_dir), **extra}


def _error(result: ChildResult) -> str:
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit status {result.returncode}")[:MAX_ERROR_CHARS]


class EngineBackend:
    def __init__(self, name: str, binary: str | None = None) -> None:
        if name not in ("docker", "podman"):
            raise ValueError(f"not a container engine: {name!r}")
        self.name = name
        self.binary = binary or shutil.which(name) or name

    def _helper_config(self, request: PullRequest) -> tuple[list[str], dict[str, str]]:
        """Write the auth file naming the helper; return extra arguments and environment."""
        document = json.dumps(helper_document(request.login_server), indent=2).encode()
        if self.name == "docker":
            directory = request.state_dir / DOCKER_CONFIG_DIR
            directory.mkdir(mode=0o700, exist_ok=True)
            write_atomic(directory / "config.json", document, CONFIG_MODE)
            return [], {"DOCKER_CONFIG": str(directory)}
        auth_file = request.state_dir / PODMAN_AUTH_FILE
        write_atomic(auth_file, document, CONFIG_MODE)
        tls = "true" if request.tls_verify else "false"
        return [f"--authfile={auth_file}", f"--tls-verify={tls}"], {}

    def pull(self, request: PullRequest, cancel: threading.Event) -> str:
        extra_args, extra_env = self._helper_config(request)
        env = child_environment(request.state_dir, extra_env)
        reference = request.image.full_name(request.login_server)
        argv = [self.binary, "pull", f"--platform={request.platform}", *extra_args, reference]
        pulled = run_child(
            argv,
            env=env,
            timeout_s=request.timeout_s,
            cancel=cancel,
            abort_markers=LOGIN_PROMPT_MARKERS,
        )
        if pulled.returncode != 0:
            text = pulled.stderr + pulled.stdout
            raise PullFailed(_error(pulled), auth=looks_like_auth_failure(text))
        return self._digest(reference, env, request, cancel)

    def _digest(
        self, reference: str, env: dict[str, str], request: PullRequest, cancel: threading.Event
    ) -> str:
        template = "{{json .RepoDigests}}" if self.name == "docker" else "{{json .Digest}}"
        argv = [self.binary, "image", "inspect", "--format", template, reference]
        inspected = run_child(argv, env=env, timeout_s=INSPECT_TIMEOUT_S, cancel=cancel)
        if inspected.returncode != 0:
            raise PullFailed(f"pulled, but inspect failed: {_error(inspected)}")
        try:
            found = json.loads(inspected.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            raise PullFailed("pulled, but inspect printed no digest") from None
        candidates = found if isinstance(found, list) else [found]
        repository = f"{request.login_server}/{request.image.repository}@"
        for candidate in candidates:
            ours = "@" not in str(candidate) or str(candidate).startswith(repository)
            if isinstance(candidate, str) and "sha256:" in candidate and ours:
                return candidate.rsplit("@", 1)[-1]
        raise PullFailed("pulled, but inspect printed no digest of this repository")
