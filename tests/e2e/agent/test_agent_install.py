"""The agent installs alone into a fresh virtual environment (no Flask, SQLModel, SQLAlchemy or
APScheduler) from its own ``device_agent/pyproject.toml``, and runs there.

The package directory is copied first, so that the build's ``build/`` and ``*.egg-info`` land in
the test's temporary directory, not in the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

import device_agent
from tests.support.timing import scaled

PACKAGE_DIR = Path(device_agent.__file__).parent
SERVER_STACK = ("flask", "sqlmodel", "sqlalchemy", "apscheduler", "fleet")
INSTALL_TIMEOUT_S = 600.0  # unscaled bound on one command (pip resolving and building)

SMOKE = """
from datetime import UTC, datetime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from device_agent.protocol.envelope import open_envelope, seal
from device_agent.state.keys import load_or_create_device_keys
from pathlib import Path
import sys
device = load_or_create_device_keys(Path(sys.argv[1]))
server = Ed25519PrivateKey.generate()
data = seal({"command": "wipe"}, device_id="pi-1", version=1, kind="command",
            device_public_key=device.x25519.public_key(), server_private_key=server,
            now=datetime.now(UTC))
opened = open_envelope(data, device_id="pi-1", device_private_key=device.x25519,
                       server_public_key=server.public_key(), last_version=0)
print(opened.payload["command"])
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Away from the working tree (``python -c`` puts the current directory on sys.path) and
    without PYTHONPATH, so only what the venv holds can be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=scaled(INSTALL_TIMEOUT_S),
        cwd=cwd,
        env=env,
    )


@pytest.mark.e2e
def test_agent_installs_alone_into_a_fresh_venv(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        PACKAGE_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"

    installed = run(python, "-m", "pip", "install", "--quiet", source, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    for module in SERVER_STACK:
        probe = run(python, "-c", f"import {module}", cwd=tmp_path)
        assert probe.returncode != 0, f"{module} is importable in the agent's venv"
        assert "ModuleNotFoundError" in probe.stderr
    where = run(
        python, "-c", "import device_agent.protocol.envelope as e; print(e.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(env_dir)), where.stdout

    help_text = run(env_dir / "bin" / "fleet-agent", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "usage: fleet-agent" in help_text.stdout
    version = run(env_dir / "bin" / "fleet-agent", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"fleet-agent {device_agent.__version__}"

    helper = run(env_dir / "bin" / "docker-credential-fleet", "version", cwd=tmp_path)
    assert helper.returncode == 0 and "fleet-agent" in helper.stdout, helper.stderr
    every_module = (
        "import device_agent.runtime.agent, device_agent.pull.builtin_child, "
        "device_agent.pull.oci_puller"
    )
    imported = run(python, "-c", every_module, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    not_enrolled = run(
        env_dir / "bin" / "fleet-agent", "status", "--state-dir", tmp_path, cwd=tmp_path
    )
    assert not_enrolled.returncode == 1 and "not enrolled" in not_enrolled.stdout

    smoke = run(python, "-c", SMOKE, tmp_path / "state", cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.strip() == "wipe"

    listed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    assert not any(f"{name}==" in listed for name in SERVER_STACK), listed
    assert not (PACKAGE_DIR / "build").exists()
