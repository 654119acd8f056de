"""The real agent, installed alone in a fresh virtual environment, against the real server,
broker and registry: enroll, receive, pull, rotate while pulling, survive kill -9, report.
(Issues 4, 5 and 6 meet here.)"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.delivery.parts import AgentCli, Parts
from tests.support import skopeo
from tests.support.oci import build_oci_image
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.e2e
# Unscaled bounds on a failure. A pull cycle (token, manifest, blobs) takes a few seconds here;
# each condition below waits for at most a couple of them.
WAIT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Each look at the agent's status is a `fleet-agent status` process: not 20 a second.
STATUS_POLL_S = 0.2


def agent_wait(predicate: Callable[[], object], what: str) -> None:
    """``wait_until`` with this test's bound, polling gently."""
    wait_until(predicate, what, timeout=WAIT_S, poll=STATUS_POLL_S)


@pytest.mark.parametrize("backend", ["builtin", "skopeo"])
def test_agent_lives_through_rotation_and_kill_9_with_no_failed_pull(
    parts: Parts, fresh_agent: str, tmp_path: Path, backend: str
) -> None:
    server, registry = parts.server, parts.registry
    device = f"stack-{backend}"
    state = tmp_path / "agent"

    agent = AgentCli(fresh_agent, state)
    start = agent.start

    def status() -> dict:  # type: ignore[type-arg]
        return json.loads(agent("status", "--json").stdout)

    def shown() -> dict:  # type: ignore[type-arg]
        return server.cli_ok("device", "show", "--name", device).json()  # type: ignore[no-any-return]

    pusher = server.cli_ok(
        "token", "create", "--name", f"push-{backend}", "--scope-map", "_repositories_push"
    ).json()
    creds = f"push-{backend}:{pusher['credentials']['passwords'][0]['value']}"
    assert skopeo.copy_to_registry(
        build_oci_image(tmp_path / "img"), registry.host_port, "edge/stack", "1.0", creds
    ).ok
    enrolled = agent(
        "enroll", "--server", server.url, "--secret", parts.secret, "--device-id", device
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert parts.secret not in enrolled.stdout + enrolled.stderr
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[pull]\nbackend = "{backend}"\nimages = ["edge/stack:1.0"]\n'
        'interval = 10\ntls_verify = false\nplatform = "linux/arm64"\n'
    )
    log = tmp_path / "agent.log"
    pulled = lambda: log.read_text().count("pulled ")  # noqa: E731
    running = start(config, log)
    try:
        agent_wait(
            lambda: (status().get("last_pull") or {}).get("ok") is True,
            "a first successful pull",
        )
        assert status()["credentials"]["slot"] == "password1"
        # a rotation while the agent keeps pulling (on its interval, and told to by the server)
        server.cli_ok("device", "pull", "--name", device)
        server.cli_ok("device", "rotate", "--name", device, "--now")
        server.cli_ok("device", "pull", "--name", device, "--image", "edge/stack:1.0")
        agent_wait(
            lambda: (status()["credentials"] or {}).get("slot") == "password2",
            "the rotated password in use",
        )
        agent_wait(lambda: shown()["activeSlot"] == "password2", "the server to see the ack")
        count = pulled()
        server.cli_ok("device", "pull", "--name", device)
        agent_wait(lambda: pulled() > count, "a pull on the new password")
        # kill -9, start again: the stored credentials still work
        running.send_signal(signal.SIGKILL)
        running.wait(scaled(STOP_TIMEOUT_S))
        count = pulled()
        running = start(config, log)
        agent_wait(lambda: pulled() > count, "a pull after kill -9")
        server.cli_ok("device", "pull", "--name", device)
        agent_wait(lambda: pulled() > count + 1, "a commanded pull")
        assert status()["credentials"]["slot"] == "password2"
        agent_wait(lambda: shown()["lastPullOk"] is True, "the server to hear the pull")
        assert shown()["pendingDeliveries"] == 0
    finally:
        running.terminate()
        running.wait(scaled(STOP_TIMEOUT_S))
    text = log.read_text()
    assert pulled() >= 4
    assert "failed" not in text, text[-3000:]  # not one pull failed across the rotation
    assert "fltp_" not in text and "fltm_" not in text  # no password in the logs
