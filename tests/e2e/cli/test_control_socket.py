"""Two `fleet serve` on one host, as one user: each keeps gunicorn's control socket in its own
data directory, none in the user's home, and stopping one leaves the other's in place."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

from fleet.cli.server import CONTROL_SOCKET
from tests.e2e.fleet_process import FleetServer


def _is_socket(path: Path) -> bool:
    return path.exists() and stat.S_ISSOCK(path.lstat().st_mode)


def test_two_servers_keep_their_own_control_sockets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Short directories: a socket path holds at most 107 bytes, pytest's are long.
    with (
        tempfile.TemporaryDirectory(prefix="fleet-a-") as first_dir,
        tempfile.TemporaryDirectory(prefix="fleet-b-") as second_dir,
    ):
        first = FleetServer(Path(first_dir), env={"HOME": str(home), "XDG_RUNTIME_DIR": ""})
        second = FleetServer(Path(second_dir), env={"HOME": str(home), "XDG_RUNTIME_DIR": ""})
        with first, second:
            assert _is_socket(first.data_dir / CONTROL_SOCKET), first.log_tail()
            assert _is_socket(second.data_dir / CONTROL_SOCKET), second.log_tail()
            assert stat.S_IMODE((first.data_dir / CONTROL_SOCKET).lstat().st_mode) == 0o600
            first.stop()
            assert not (first.data_dir / CONTROL_SOCKET).exists()
            assert _is_socket(second.data_dir / CONTROL_SOCKET)
        assert not (home / ".gunicorn").exists()
