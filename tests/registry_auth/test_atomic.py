from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fleet.registry_auth import atomic
from fleet.registry_auth.atomic import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomic


@pytest.mark.parametrize("mode", [PRIVATE_FILE_MODE, PUBLIC_FILE_MODE])
def test_writes_the_data_with_the_mode_and_leaves_no_temp_file(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    write_atomic(target, b"new", mode=mode)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def refuse(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new", mode=PRIVATE_FILE_MODE)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
