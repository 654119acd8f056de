"""The server's wheel holds every file the server reads at run time.

An editable install (what ``scripts/bootstrap`` makes) reads the working tree, so a file left out
of ``[tool.setuptools.package-data]`` is missed only by a real install: the dashboard's vendored
htmx and Pico CSS once were. The sources are copied first, so that the build's ``build/`` and
``*.egg-info`` land in the test's temporary directory, not in the working tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import fleet
from tests.support.timing import scaled

ROOT = Path(fleet.__file__).parent.parent
BUILD_TIMEOUT_S = 300.0  # pip fetching the build backend and building
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")


def _files(top: Path) -> set[str]:
    return {
        p.relative_to(top.parent).as_posix()
        for p in top.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.mark.e2e
def test_the_wheel_holds_every_file_of_the_server_package(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name in ("fleet", "device_agent"):
        shutil.copytree(ROOT / name, source / name, ignore=SKIPPED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            tmp_path / "out",
            source,
        ],
        capture_output=True,
        text=True,
        timeout=scaled(BUILD_TIMEOUT_S),
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "out").glob("fleet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    missing = sorted(_files(source / "fleet") - packed)
    assert missing == [], f"left out of the wheel: {missing}"
    assert {"fleet/web/static/vendor/htmx.min.js", "fleet/web/static/vendor/pico.min.css"} <= packed
    agent_modules = {f for f in _files(source / "device_agent") if f.endswith(".py")}
    assert agent_modules <= packed
