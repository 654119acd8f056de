"""Every test below this folder starts real parts (mosquitto, the Distribution registry,
chromium, podman, skopeo, a ``fleet serve`` or agent process) and is marked ``e2e`` here, so
that ``-m e2e`` and ``-m "not e2e"`` select exactly this folder (tests/README.md). The parts
themselves are started by the areas' own conftests and by tests/support."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)
