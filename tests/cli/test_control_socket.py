"""Where `fleet serve` puts gunicorn's control socket: in its own data directory, or nowhere
when that path would not fit in a socket address."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cli.server import CONTROL_SOCKET, MAX_SOCKET_PATH_BYTES, control_socket_path


def test_the_socket_is_in_the_data_directory(tmp_path: Path) -> None:
    assert control_socket_path(tmp_path / "data") == tmp_path / "data" / CONTROL_SOCKET


def test_a_relative_data_directory_gives_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert control_socket_path(Path("data")) == tmp_path / "data" / CONTROL_SOCKET


def test_a_path_too_long_for_a_socket_means_no_socket() -> None:
    longest = Path("/" + "d" * (MAX_SOCKET_PATH_BYTES - len(CONTROL_SOCKET) - 2))
    assert len(str(longest / CONTROL_SOCKET)) == MAX_SOCKET_PATH_BYTES
    assert control_socket_path(longest) == longest / CONTROL_SOCKET
    assert control_socket_path(Path(str(longest) + "d")) is None
