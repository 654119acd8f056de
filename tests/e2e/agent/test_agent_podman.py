"""The podman backend for real: Debian's podman pulls through ``docker-credential-fleet`` from a
Distribution registry whose token endpoint is the real ``fleet serve``, before and after the
server rotates the device's password and retires the old one.

The device enrolls over HTTP, the server delivers its password over the real broker, the agent
(in a thread) proves it at the token endpoint and runs ``podman pull --authfile`` with an auth
file that names only the helper. After ``fleet device rotate`` is acknowledged, a scheduler pass
deletes the old slot, so the token endpoint refuses the old password: the pull of an image
pushed after that can succeed only with the new one, read by the helper from the store.

podman gets its own storage and configuration in the test's directory (vfs driver, cgroupfs,
a file events log; set through ``CONTAINERS_*`` variables the agent's child inherits), so the
machine's images and settings are never touched. Without podman the test fails in CI and is
skipped elsewhere, saying why.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from device_agent.commands.enroll import EnrollSecret, enroll
from device_agent.pull.engine_backend import PODMAN_AUTH_FILE, STATE_DIR_ENV, helper_directories
from device_agent.state.config import PullConfig
from device_agent.state.status_file import read_status
from device_agent.state.store import load_state
from tests.e2e.agent.agent_stack import AgentStack, Login
from tests.support.timing import scaled, wait_until

PODMAN = shutil.which("podman")
IN_CI = os.environ.get("CI") == "true"
MISSING = "podman is not installed (Debian package podman): the podman backend is untested"
# Locally a missing podman skips, before the server and registry start; in CI it fails.
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PODMAN is None and not IN_CI, reason=MISSING)]

PULL_TIMEOUT_S = 120.0  # unscaled bound the agent gives one podman pull
PULL_WAIT_S = 60.0  # unscaled bound on waiting for a pull's result (podman starts twice)
PLATFORM = "linux/arm64"  # the test images are arm64; pulling needs no emulation


def podman_binary() -> str:
    if PODMAN is None:
        pytest.fail(f"{MISSING}; CI must install it (scripts/system-deps)")
    return PODMAN


def write_podman_config(root: Path) -> dict[str, str]:
    """Storage, engine and registries configuration of podman's own under ``root``; the
    variables that point podman (and only podman) at it."""
    root.mkdir(parents=True)
    storage = root / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "vfs"\n'  # no overlay mounts in this sandbox
        f'graphroot = "{root / "graph"}"\n'
        f'runroot = "{root / "run"}"\n'
    )
    containers = root / "containers.conf"
    containers.write_text(
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'  # no systemd here
        'events_logger = "file"\n'  # no journald here
        f'events_logfile_path = "{root / "events.log"}"\n'
        f'tmp_dir = "{root / "tmp"}"\n'
        f'static_dir = "{root / "libpod"}"\n'
        f'volume_path = "{root / "volumes"}"\n'
        "[network]\n"
        f'network_config_dir = "{root / "networks"}"\n'
    )
    registries = root / "registries.conf"
    registries.write_text("unqualified-search-registries = []\n")
    return {
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_CONF": str(containers),
        "CONTAINERS_REGISTRIES_CONF": str(registries),
    }


@pytest.fixture
def podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """podman's isolated configuration, set in this process's environment (the agent's pull
    children inherit it); returns the variables."""
    podman_binary()
    env = write_podman_config(tmp_path / "podman")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)  # the agent's auth file, only
    return env


def last_pull(state_dir: Path) -> dict[str, Any]:
    return (read_status(state_dir) or {}).get("last_pull") or {}


def pulled(state_dir: Path, digest: str) -> dict[str, Any] | None:
    """The last pull, once it is a success of ``digest`` (a failure of it fails the wait)."""
    last = last_pull(state_dir)
    if last.get("ok") is False:
        raise AssertionError(f"a pull failed: {last}")
    return last if last.get("ok") and last.get("digest") == digest else None


def podman_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [podman_binary(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=scaled(PULL_TIMEOUT_S),
        check=False,
    )


def test_podman_pulls_through_the_helper_before_and_after_a_rotation(
    podman: dict[str, str], agent_stack: AgentStack, start_agent, tmp_path: Path
) -> None:
    stack = agent_stack
    registry = stack.registry.host_port
    repository = f"edge/podman-{secrets.token_hex(3)}"
    before = stack.push(repository, "1")
    device_id = f"podman-{secrets.token_hex(3)}"
    state = tmp_path / "device"
    enroll(
        stack.server.url,
        EnrollSecret(secret=stack.enrollment_secret),
        device_id=device_id,
        state_dir=state,
    )
    pull = PullConfig(
        backend="podman",
        images=(f"{repository}:1",),
        tls_verify=False,
        platform=PLATFORM,
        timeout_s=scaled(PULL_TIMEOUT_S),
    )
    running = start_agent(state, pull=pull, check=None)  # proven at the real token endpoint

    first = wait_until(
        lambda: pulled(state, before.manifest_digest), "podman's first pull", PULL_WAIT_S
    )
    assert first["image"] == f"{registry}/{repository}:1"
    old_credentials = load_state(state).current
    assert old_credentials is not None and old_credentials.slot == "password1"
    old = Login(old_credentials.username, old_credentials.password)
    token = stack.api("GET", f"/devices/{device_id}")["token"]
    assert stack.slots(token) == ["password1"]
    auth_file = json.loads((state / PODMAN_AUTH_FILE).read_text())
    assert auth_file == {"auths": {}, "credHelpers": {registry: "fleet"}}

    # The server rotates; the agent proves, promotes and acknowledges the new password; a
    # scheduler pass retires the old slot (grace 0 here), so the old password is refused.
    stack.server.cli_ok("device", "rotate", "--name", device_id, "--now")
    wait_until(
        lambda: stack.api("GET", f"/devices/{device_id}")["activeSlot"] == "password2",
        "the server to hear the device acknowledge password2",
    )
    stack.server.cli_ok("scheduler", "run-once")
    assert stack.slots(token) == ["password2"]
    assert stack.token_answer(old, repository) == 401
    new_credentials = load_state(state).current
    assert new_credentials is not None and new_credentials.slot == "password2"
    new = Login(new_credentials.username, new_credentials.password)
    assert new.password != old.password
    assert stack.token_answer(new, repository) == 200

    after = stack.push(repository, "2")  # content that did not exist before the rotation
    stack.server.cli_ok("device", "pull", "--name", device_id, "--image", f"{repository}:2")
    second = wait_until(
        lambda: pulled(state, after.manifest_digest),
        "podman's pull after the rotation",
        PULL_WAIT_S,
    )
    assert second["image"] == f"{registry}/{repository}:2"
    running.stop()

    # Both images are in podman's own storage, and nowhere else podman looked for a login:
    # the same pull with a helper that finds no store is refused.
    listed = podman_run(podman, "images", "--digests", "--format", "{{.Digest}}")
    assert listed.returncode == 0, listed.stderr
    assert {before.manifest_digest, after.manifest_digest} <= set(listed.stdout.split())
    assert json.loads((state / PODMAN_AUTH_FILE).read_text()) == auth_file  # still no password
    no_store = tmp_path / "no-store"
    no_store.mkdir()
    path = os.pathsep.join([*helper_directories(), os.environ["PATH"]])
    refused = podman_run(
        {**podman, STATE_DIR_ENV: str(no_store), "PATH": path},
        "pull",
        f"--authfile={state / PODMAN_AUTH_FILE}",
        "--tls-verify=false",
        f"--platform={PLATFORM}",
        f"{registry}/{repository}:2",
    )
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "authentication" in refused.stderr.lower()
