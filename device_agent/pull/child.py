"""Run a backend's child process (skopeo, docker, podman) with a timeout, stopping it when the
agent stops, or at once when its output shows it waiting for a person (the docker CLI answers a
refused login by prompting for ``docker login``, which would otherwise hang until the timeout).
Output is captured and returned, never logged here: the caller decides."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from device_agent.pull.backend import PullCancelled, PullFailed

POLL_S = 0.1
TERMINATE_GRACE_S = 5.0
MAX_OUTPUT_CHARS = 64 * 1024


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    stdout: str
    stderr: str


class _Reader(threading.Thread):
    """Collects one stream (bounded) and notices a marker in it."""

    def __init__(self, stream: IO[str], markers: tuple[str, ...], seen: threading.Event) -> None:
        super().__init__(daemon=True)
        self._stream, self._markers, self._seen = stream, markers, seen
        self.text = ""

    def run(self) -> None:
        for line in self._stream:
            if len(self.text) < MAX_OUTPUT_CHARS:
                self.text += line
            if any(marker in line.lower() for marker in self._markers):
                self._seen.set()


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    cancel: threading.Event,
    abort_markers: tuple[str, ...] = (),
    stdin_data: str | None = None,
) -> ChildResult:
    """Run ``argv``; raises ``PullCancelled`` on cancel, ``PullFailed`` on timeout, and
    ``PullFailed(auth=True)`` when a line contains one of ``abort_markers`` (lower case).
    ``stdin_data`` (small: it must fit the pipe) is written to the child's stdin."""
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            text=True,
        )
    except OSError as error:
        raise PullFailed(f"cannot run {argv[0]}: {error.strerror}") from None
    if stdin_data is not None and process.stdin is not None:
        with process.stdin:
            process.stdin.write(stdin_data)
    aborted = threading.Event()
    readers = [
        _Reader(stream, abort_markers, aborted)
        for stream in (process.stdout, process.stderr)
        if stream is not None
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                process.wait(POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel.is_set():
                raise PullCancelled()
            if aborted.is_set():
                raise PullFailed(f"{argv[0]} asked for an interactive login: refused", auth=True)
            if time.monotonic() > deadline:
                raise PullFailed(f"{argv[0]} took longer than {timeout_s:g} s")
    finally:
        if process.poll() is None:
            _stop(process)
        for reader in readers:
            reader.join(TERMINATE_GRACE_S)
    return ChildResult(process.returncode, readers[0].text, readers[1].text)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
