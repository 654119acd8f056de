"""SIGKILL during credential writes never leaves a torn, foreign or world-readable file.

A forked child opens the store (which removes stale temporary files) and writes credentials in
a loop, reporting each completed step on a pipe; the parent kills it with SIGKILL after a random
delay, then checks the file: it parses, it equals the state of the step last reported or of the
one after it (whose rename may have landed just before the kill), it is mode 0600, and any
temporary file left behind is 0600 and gone once the next child has started.

A fork, not a fresh interpreter: starting Python costs 50-100 ms on this machine, which would
make a thousand kills take minutes; the kill lands in the same write path either way.
FLEET_AGENT_CRASH_KILLS sets the number of kills (default 1000). Coverage is paused for the
loop (``tests/support/coverage_pause.py``): the children are killed before they could save any.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import struct
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from device_agent.state.atomic import temp_files
from device_agent.state.credentials import Credentials
from device_agent.state.store import FILENAME, CredentialStore, StoreState, load_state
from tests.support.coverage_pause import coverage_paused

KILLS = int(os.environ.get("FLEET_AGENT_CRASH_KILLS", "1000"))
MAX_DELAY_S = 0.012  # the kill lands anywhere in the first writes: the delay is the test's input
STEP = struct.Struct(">Q")


def credential(version: int) -> Credentials:
    return Credentials(
        login_server="registry.example:5000",
        username="device-crash",
        password=f"pw-{version:08d}-" + "x" * 48,
        slot="password1" if version % 2 else "password2",
        expiry=datetime(2026, 6, 1, tzinfo=UTC),
        version=version,
    )


def expected_state(step: int) -> StoreState:
    """Step 2v-1 stages version v; step 2v promotes it."""
    promoted = step // 2
    return StoreState(
        current=credential(promoted) if promoted >= 1 else None,
        previous=credential(promoted - 1) if promoted >= 2 else None,
        staged=credential((step + 1) // 2) if step % 2 else None,
        versions={"credentials": (step + 1) // 2} if step else {},
    )


def step_of(state: StoreState) -> int:
    if state.staged is not None:
        return 2 * state.staged.version - 1
    return 2 * state.current.version if state.current is not None else 0


def writer(state_dir: Path, report_fd: int) -> None:
    store = CredentialStore(state_dir)
    step = step_of(store.state)
    os.write(report_fd, STEP.pack(step))
    while True:
        step += 1
        if step % 2:
            store.stage(credential((step + 1) // 2))
        else:
            store.promote()
        os.write(report_fd, STEP.pack(step))


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def spawn_writer(state_dir: Path) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_fd)
            writer(state_dir, write_fd)
        except BaseException:
            traceback.print_exc(file=sys.stderr)
        finally:
            os._exit(70)
    os.close(write_fd)
    return pid, read_fd


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_sigkill_during_writes_never_tears_the_file(tmp_path: Path) -> None:
    with coverage_paused():
        kill_writers(tmp_path)


def kill_writers(tmp_path: Path) -> None:
    rng = random.Random(20260301)
    target = tmp_path / FILENAME
    observed = 0
    left_behind: list[Path] = []
    mid_write = 0
    started = time.monotonic()
    for kill in range(KILLS):
        pid, read_fd = spawn_writer(tmp_path)
        try:
            first = os.read(read_fd, STEP.size)
            assert len(first) == STEP.size, f"kill {kill}: the writer died before starting"
            assert STEP.unpack(first)[0] == observed
            assert not any(p.exists() for p in left_behind), "a stale temp file survived a start"
            # Not a wait for anything: a random moment for the kill, the variable under test.
            time.sleep(rng.uniform(0, MAX_DELAY_S))
            os.kill(pid, signal.SIGKILL)
        finally:
            _, status = os.waitpid(pid, 0)
            rest = read_all(read_fd)
            os.close(read_fd)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"kill {kill}: the writer failed on its own (status {status})"
        )
        reported = STEP.unpack(rest[-STEP.size :])[0] if rest else observed

        state = load_state(tmp_path)  # raises StoreCorrupt on a torn file
        step = step_of(state)
        assert step in (reported, reported + 1), f"kill {kill}: step {step} after {reported}"
        assert state == expected_state(step)
        if step:
            assert mode(target) == 0o600
        else:  # killed before its first write landed: nothing was ever stored
            assert not target.exists()
        left_behind = temp_files(target)
        assert all(mode(p) == 0o600 for p in left_behind)
        mid_write += bool(left_behind)
        observed = step

    elapsed = time.monotonic() - started
    store = CredentialStore(tmp_path)
    assert temp_files(target) == []
    assert store.state == expected_state(observed)
    print(
        f"\n{KILLS} SIGKILLs in {elapsed:.1f} s; {observed} steps written; "
        f"{mid_write} kills left a temporary file behind"
    )
    if KILLS >= 200:
        assert observed > KILLS, "the writer barely wrote: the kills tested nothing"
