"""The real agent against the real server, broker and registry: enroll, receive, pull, rotate
while pulling, survive kill -9, report. (issues 4, 5 and 6 meet here)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.delivery_e2e.conftest import Parts
from tests.support import skopeo
from tests.support.oci import build_oci_image

pytestmark = pytest.mark.e2e
AGENT = str(Path(sys.executable).with_name("fleet-agent"))
WAIT_S = 30.0


def agent_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return {**env, "FLEET_AGENT_STATE_DIR": str(state)}


def status(state: Path) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [AGENT, "status", "--json"],
        env=agent_env(state),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return json.loads(done.stdout)


def wait_until(predicate, what: str, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def run_agent(state: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [AGENT, "run", "--config", str(config)],
            env=agent_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_agent_lives_through_rotation_and_kill_9_with_no_failed_pull(
    parts: Parts, tmp_path: Path
) -> None:
    server, registry = parts.server, parts.registry
    pusher = server.cli_ok(
        "token", "create", "--name", "stack-pusher", "--scope-map", "_repositories_push"
    ).json()
    creds = f"stack-pusher:{pusher['credentials']['passwords'][0]['value']}"
    assert skopeo.copy_to_registry(
        build_oci_image(tmp_path / "img"), registry.host_port, "edge/stack", "1.0", creds
    ).ok
    state = tmp_path / "agent"
    enroll = subprocess.run(
        [
            AGENT,
            "enroll",
            "--server",
            server.url,
            "--secret",
            parts.secret,
            "--device-id",
            "stack-1",
        ],
        env=agent_env(state),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert enroll.returncode == 0, enroll.stderr
    assert parts.secret not in enroll.stdout + enroll.stderr
    config = tmp_path / "agent.toml"
    config.write_text(
        '[pull]\nbackend = "builtin"\nimages = ["edge/stack:1.0"]\ninterval = 10\n'
        'tls_verify = false\nplatform = "linux/arm64"\n'
    )
    log = tmp_path / "agent.log"
    agent = run_agent(state, config, log)
    try:
        wait_until(
            lambda: (status(state).get("last_pull") or {}).get("ok") is True,
            "a first successful pull",
        )
        first = status(state)["credentials"]
        assert first["slot"] == "password1"
        # rotation while the agent keeps pulling (on its interval, and told to by the server)
        server.cli_ok("device", "pull", "--name", "stack-1")
        server.cli_ok("device", "rotate", "--name", "stack-1", "--now")
        server.cli_ok("device", "pull", "--name", "stack-1", "--image", "edge/stack:1.0")
        wait_until(
            lambda: (status(state)["credentials"] or {}).get("slot") == "password2",
            "the rotated password in use",
        )
        wait_until(
            lambda: (
                server.cli_ok("device", "show", "--name", "stack-1").json()["activeSlot"]
                == "password2"
            ),
            "the server to see the acknowledgement",
        )
        pulls = log.read_text().count("pulled")
        server.cli_ok("device", "pull", "--name", "stack-1")
        wait_until(lambda: log.read_text().count("pulled") > pulls, "a pull on the new password")
        # kill -9 mid-life, start again: the stored credentials still work
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        agent = run_agent(state, config, log)
        before = log.read_text().count("pulled")
        wait_until(lambda: log.read_text().count("pulled") > before, "a pull after kill -9")
        server.cli_ok("device", "pull", "--name", "stack-1")
        wait_until(lambda: log.read_text().count("pulled") > before + 1, "a commanded pull")
        report = status(state)
        assert report["credentials"]["slot"] == "password2"
        shown = server.cli_ok("device", "show", "--name", "stack-1").json()
        assert shown["lastPullOk"] is True and shown["pendingDeliveries"] == 0
    finally:
        agent.terminate()
        agent.wait(15)
    text = log.read_text()
    assert text.count("pulled") >= 4
    assert "failed" not in text, text[-3000:]  # not one pull failed across the rotation
    for line in text.splitlines():
        assert "fltp_" not in line and "fltm_" not in line  # no password in the logs
