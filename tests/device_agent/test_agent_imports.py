"""The agent package never pulls in the server's stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import device_agent

FORBIDDEN = {"flask", "sqlmodel", "sqlalchemy", "apscheduler", "fleet"}
PACKAGE_DIR = Path(device_agent.__file__).parent


def test_no_agent_module_imports_the_server_stack() -> None:
    modules = sorted(
        ".".join(("device_agent", *p.relative_to(PACKAGE_DIR).with_suffix("").parts))
        for p in PACKAGE_DIR.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert FORBIDDEN.isdisjoint(out.split()), out
