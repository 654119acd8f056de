"""One thread that runs pulls one at a time, so a slow pull never holds up the handling of
envelopes, and a device never runs several pulls at once. Results go back through a callback
(the main thread's inbox); the backend is created on first use, so its imports (``requests``
for the built-in puller) cost nothing until a pull runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from device_agent.pull.backend import Backend, PullCancelled, PullFailed, PullRequest
from device_agent.pull.factory import make_backend

log = logging.getLogger(__name__)

MAX_QUEUED = 100
JOIN_TIMEOUT_S = 30.0
REPORT_RETRY_S = 0.5


@dataclass(frozen=True)
class PullDone:
    name: str  # the image as it was asked for (config or command)
    full_name: str  # LOGIN_SERVER/REPOSITORY:TAG
    ok: bool
    digest: str | None
    error: str | None
    auth_failed: bool = False


class PullWorker:
    def __init__(self, backend_name: str, report: Callable[[PullDone], bool]) -> None:
        self._backend_name = backend_name
        self._backend: Backend | None = None
        self._report = report
        self._jobs: queue.Queue[tuple[str, PullRequest] | None] = queue.Queue(MAX_QUEUED)
        self.cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-agent-pull", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, name: str, request: PullRequest) -> bool:
        try:
            self._jobs.put_nowait((name, request))
        except queue.Full:
            return False
        return True

    def stop(self) -> None:
        """Cancel the running pull (its child process is stopped) and end the thread."""
        self.cancel.set()
        while True:  # drop what has not started: the agent is going away
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        self._thread.join(JOIN_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self.cancel.is_set():
                return
            name, request = job
            done = self._pull(name, request)
            # A lost result would leave the image "running" for ever: wait for room.
            while not self._report(done) and not self.cancel.wait(REPORT_RETRY_S):
                pass

    def _pull(self, name: str, request: PullRequest) -> PullDone:
        full = request.image.full_name(request.login_server)
        try:
            if self._backend is None:
                self._backend = make_backend(self._backend_name)
            log.info("pulling %s with %s", full, self._backend.name)
            digest = self._backend.pull(request, self.cancel)
        except PullCancelled as error:
            return PullDone(name, full, False, None, error.message)
        except PullFailed as error:
            log.warning("pull of %s failed: %s", full, error.message)
            return PullDone(name, full, False, None, error.message, auth_failed=error.auth)
        except Exception as error:  # a bug in a backend must not kill the agent
            log.exception("pull of %s crashed", full)
            return PullDone(name, full, False, None, f"internal error: {error.__class__.__name__}")
        log.info("pulled %s (%s)", full, digest)
        return PullDone(name, full, True, digest, None)
