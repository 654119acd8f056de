"""The agent's state directory: one that others may read is tightened to 0700; one that others
may write, or that another user owns, is refused with a clear error before anything in it is
trusted or changed (issue 12, defect 13)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from device_agent.commands import cli
from device_agent.commands.enroll import EnrollError, EnrollSecret, enroll
from device_agent.commands.run import build_agent
from device_agent.state.config import AgentConfig
from device_agent.state.enrollment import FILENAME
from device_agent.state.keys import SERVER_KEY_FILE
from device_agent.state.state_dir import StateDirError
from tests.device_agent.commands.test_agent_enroll import DEVICE, SECRET, EnrollApi, api

__all__ = ["api"]
PLANTED = "planted-by-someone-else\n"
OTHER_UID = 54321


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _open_dir(tmp_path: Path, dir_mode: int) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(dir_mode)
    return state


def _enroll(server_url: str, state: Path) -> None:
    enroll(server_url, EnrollSecret(secret=SECRET), device_id=DEVICE, state_dir=state)


def test_a_directory_others_may_read_is_tightened(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, server = api
    state = _open_dir(tmp_path, 0o755)
    _enroll(server.url, state)
    assert mode(state) == 0o700
    assert (state / FILENAME).exists()


@pytest.mark.parametrize("dir_mode", [0o775, 0o757, 0o777], ids=oct)
def test_a_directory_others_may_write_is_refused_and_left_alone(
    api: tuple[EnrollApi, object], tmp_path: Path, dir_mode: int
) -> None:
    _, server = api
    state = _open_dir(tmp_path, dir_mode)
    (state / SERVER_KEY_FILE).write_text(PLANTED)
    with pytest.raises(EnrollError) as caught:
        _enroll(server.url, state)  # type: ignore[attr-defined]
    assert str(state) in caught.value.message
    assert "writable by group or others" in caught.value.message
    assert server.requests == []  # type: ignore[attr-defined]
    assert mode(state) == dir_mode
    assert (state / SERVER_KEY_FILE).read_text() == PLANTED
    assert sorted(p.name for p in state.iterdir()) == [SERVER_KEY_FILE]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_directory_of_another_user_is_refused(api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, server = api
    state = _open_dir(tmp_path, 0o700)
    os.chown(state, OTHER_UID, OTHER_UID)
    with pytest.raises(EnrollError) as caught:
        _enroll(server.url, state)
    assert f"owned by uid {OTHER_UID}" in caught.value.message
    assert server.requests == []


def test_run_tightens_or_refuses_as_enroll_does(api, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, server = api
    state = tmp_path / "state"
    _enroll(server.url, state)
    state.chmod(0o755)
    build_agent(state, AgentConfig())
    assert mode(state) == 0o700
    state.chmod(0o777)
    with pytest.raises(StateDirError):
        build_agent(state, AgentConfig())
    config = tmp_path / "agent.toml"
    config.write_text("")
    assert cli.main(["run", "--state-dir", str(state), "--config", str(config)]) == 1
    assert "writable by group or others" in capsys.readouterr().err
