"""``fleet-agent run`` as a real process: it connects, takes a delivery, reports it through
``fleet-agent status``, and stops cleanly on SIGTERM; no output ever holds a password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent.commands import cli
from device_agent.state.status_file import read_status
from tests.e2e.agent.agent_mqtt import ServerSide
from tests.e2e.agent.conftest import Device
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]
REGISTRY_PASSWORD = "fltp_registry-password-never-printed"
PROCESS_WAIT_S = 15.0  # unscaled bound: a fresh interpreter starts, connects, or stops


def test_run_status_and_sigterm(
    make_device, fleet_server: ServerSide, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device: Device = make_device()
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"mqtt": {"reconnect_min": 0.05, "reconnect_max": 0.5}}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_agent.commands.cli",
            "run",
            "--state-dir",
            str(device.state_dir),
            "--config",
            str(config),
            "--log-level",
            "debug",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (read_status(device.state_dir) or {}).get("connected"),
            "the agent connected",
            PROCESS_WAIT_S,
        )
        # The agent checks the password at the enrollment's token endpoint, which does not
        # exist here: the credential stays staged (and is retried), never used unproven.
        sealed = device.server.credentials(REGISTRY_PASSWORD)
        fleet_server.publish(device.device_id, "credentials", sealed)
        wait_until(
            lambda: (read_status(device.state_dir) or {}).get("staged_version") == 1, "staged"
        )
        assert cli.main(["status", "--state-dir", str(device.state_dir)]) == 0
        shown = capsys.readouterr().out
        assert f"enrolled as   {device.device_id} (active)" in shown
        assert "connected since" in shown and "version 1 staged" in shown
        assert "agent         running" in shown

        process.send_signal(signal.SIGTERM)
        assert process.wait(scaled(PROCESS_WAIT_S)) == 0
    finally:
        if process.poll() is None:
            process.kill()
        out, err = process.communicate()
    assert "stopping" in err
    for secret in (REGISTRY_PASSWORD, device.enrollment.mqtt.password):
        assert secret not in out + err
    final = read_status(device.state_dir)
    assert final is not None and final["running"] is False and final["connected"] is False

    assert cli.main(["status", "--state-dir", str(device.state_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["enrolled"] and not report["agent_running"]
    assert report["staged_version"] == 1 and report["credentials"] is None
    text = json.dumps(report)
    assert REGISTRY_PASSWORD not in text and device.enrollment.mqtt.password not in text


def test_run_and_status_when_not_enrolled(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", "--state-dir", str(tmp_path)]) == 1
    assert "not enrolled" in capsys.readouterr().err
    assert cli.main(["status", "--state-dir", str(tmp_path)]) == 1
    assert cli.main(["status", "--state-dir", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["enrolled"] is False


def test_every_command_has_help_with_an_example(capsys) -> None:
    for command in ("enroll", "run", "status"):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        assert "example:" in capsys.readouterr().out
    assert cli.main([]) == 2
