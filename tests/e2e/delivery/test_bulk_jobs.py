"""A group of 300 devices rotated, then disabled, by one command each against a real
``fleet serve`` (2 workers) on each broker of the ``parts`` fixture: the CLI follows the job
from whichever worker answers, connected devices receive their new password (then their wipe)
over the broker, and their broker logins are cut; and the CLI on a real terminal draws its
progress bar."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.delivery.device import WireDevice
from tests.e2e.delivery.parts import Parts
from tests.e2e.fleet_process import FLEET
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

GROUP = "bulk-fleet"
DEVICES = 300
ONLINE = 5  # these connect and acknowledge; the rest stay offline
ENROLL_CLIENTS = 4
PROGRESS = re.compile(r"^(rotate|disable) bulk-fleet: (\d+)/300 done, (\d+) failed$")


def enroll_group(parts: Parts) -> list[WireDevice]:
    secret = parts.server.device_group(GROUP)
    devices = [
        WireDevice(f"bulk-{i:04d}", parts.server.url, protocol=parts.mqtt_protocol)
        for i in range(DEVICES)
    ]
    with ThreadPoolExecutor(ENROLL_CLIENTS) as pool:
        answers = list(pool.map(lambda d: d.enroll(secret), devices))
    assert [a.status_code for a in answers] == [201] * DEVICES
    return devices


def progress_lines(stderr: str, kind: str) -> list[tuple[int, int]]:
    found = [PROGRESS.match(line) for line in stderr.splitlines()]
    return [(int(m[2]), int(m[3])) for m in found if m and m[1] == kind]


def test_a_group_of_300_is_rotated_then_disabled_with_progress(parts: Parts) -> None:
    devices = enroll_group(parts)
    online = devices[:ONLINE]
    for device in online:
        assert not device.connect().is_failure
        device.wait_for(lambda d=device: d.credentials is not None, "credentials")
    first = {d.device_id: d.versions["credentials"] for d in online}
    passwords = {d.device_id: d.credentials["password"] for d in online}  # type: ignore[index]

    rotated = parts.server.cli("device", "rotate", "--group", GROUP, "--now")
    assert rotated.ok, rotated.stderr
    job = json.loads(rotated.stdout)
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 300, 300, 0)
    lines = progress_lines(rotated.stderr, "rotate")
    assert lines and lines[-1] == (300, 0)  # plain lines: stderr is a pipe here
    assert lines == sorted(lines)
    assert "\r" not in rotated.stderr
    for device in online:  # each got one new password, over the real broker
        device.wait_for(
            lambda d=device: d.versions["credentials"] > first[d.device_id], "the new password"
        )
        assert device.credentials["password"] != passwords[device.device_id]  # type: ignore[index]
    shown = parts.server.cli("job", "show", "--id", str(job["id"])).json()
    assert shown["state"] == "done" and shown["actor"].startswith("api-key:")

    disabled = parts.server.cli("device", "disable", "--group", GROUP, "--reason", "e2e")
    assert disabled.ok, disabled.stderr
    job = json.loads(disabled.stdout)
    assert (job["state"], job["done"], job["failed"]) == ("done", 300, 0)
    assert progress_lines(disabled.stderr, "disable")[-1] == (300, 0)
    for device in online:
        device.wait_for(lambda d=device: d.credentials is None, "the wipe command")
        device.disconnect()
    listed = parts.server.cli(
        "device", "list", "--group", GROUP, "--status", "active", "--top", "5"
    ).json()
    assert listed == []
    again = WireDevice(
        online[0].device_id,
        parts.server.url,
        online[0].x25519,
        online[0].ed25519,
        enrollment=online[0].enrollment,
        protocol=parts.mqtt_protocol,
    )
    assert again.connect().is_failure  # its broker login is cut

    # A second disable finds every device disabled already: nothing to do.
    empty = parts.server.cli("device", "disable", "--group", GROUP).json()
    assert (empty["state"], empty["total"]) == ("done", 0)


def test_on_a_terminal_the_cli_draws_a_progress_bar(parts: Parts) -> None:
    """stderr on a real pseudo-terminal (stdout a pipe, as `| jq` would make it)."""
    secret = parts.server.device_group("bulk-tty")
    devices = [
        WireDevice(f"tty-{i:03d}", parts.server.url, protocol=parts.mqtt_protocol)
        for i in range(20)
    ]
    assert all(d.enroll(secret).status_code == 201 for d in devices)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [
            FLEET,
            "device",
            "rotate",
            "--group",
            "bulk-tty",
            "--now",
            "-o",
            "tsv",
            "--query",
            "[state, done]",
        ],
        env=parts.server.env(),
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], scaled(60))
        if not ready:
            process.kill()
            raise AssertionError(f"no end of the CLI's output: {shown!r}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end closed: the CLI exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    stdout, _ = process.communicate(timeout=scaled(60))
    assert process.returncode == 0, shown
    assert stdout.decode().split() == ["done", "20"]
    text = shown.decode()
    assert "\r[" + "#" * 30 + "] 100% rotate bulk-tty: 20/20 done, 0 failed" in text
    assert "rotate bulk-tty (job " in text and ") done: 20 rotated" in text
