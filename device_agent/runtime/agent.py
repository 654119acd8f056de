"""``fleet-agent run``: the long-running agent. The main thread owns the credential store and
every decision; the MQTT link and the pull worker run in their own threads and talk to it only
through the inbox. It sleeps until an event or the next deadline (a pull due, a staged password
to check again), so an idle agent costs no CPU.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device_agent.protocol.envelope import Kind
from device_agent.protocol.messages import PullResult
from device_agent.protocol.topics import device_client_id
from device_agent.pull import auth_file
from device_agent.pull.backend import PullRequest
from device_agent.pull.images import InvalidImage, parse_image
from device_agent.pull.worker import PullDone, PullWorker
from device_agent.runtime import logs
from device_agent.runtime.backoff import Backoff
from device_agent.runtime.handler import EnvelopeHandler, Outcome
from device_agent.runtime.inbox import Inbox
from device_agent.runtime.mqtt_link import MqttLink
from device_agent.runtime.schedule import PullSchedule
from device_agent.runtime.status import StatusTracker
from device_agent.runtime.token_check import PasswordCheck, endpoint_checker
from device_agent.state.config import AgentConfig
from device_agent.state.enrollment import Enrollment
from device_agent.state.keys import DeviceKeys, server_key_from_b64
from device_agent.state.store import CredentialStore

log = logging.getLogger(__name__)

MAX_INBOX = 500
CHECK_RETRY_BASE_S = 10.0  # an unanswered password check is asked again after 5-10 s,
CHECK_RETRY_FLOOR_S = 5.0  # then 5-20 s, 5-40 s ... at most 10 minutes
CHECK_RETRY_CAP_S = 600.0
IMAGES_DIR = "images"


@dataclass(frozen=True)
class _Message:
    kind: Kind
    payload: bytes


@dataclass(frozen=True)
class _LinkState:
    connected: bool


Event = _Message | _LinkState | PullDone


class Agent:
    def __init__(
        self,
        *,
        state_dir: Path,
        config: AgentConfig,
        enrollment: Enrollment,
        keys: DeviceKeys,
        store: CredentialStore,
        check_password: PasswordCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.enrollment = enrollment
        self.store = store
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self.inbox: Inbox[Event] = Inbox(MAX_INBOX)
        self._stopping = False
        registry = enrollment.registry
        self.handler = EnvelopeHandler(
            device_id=enrollment.device_id,
            device_key=keys.x25519,
            server_key=server_key_from_b64(enrollment.server_signing_key),
            store=store,
            check_password=check_password
            or endpoint_checker(registry.token_endpoint, registry.service),
            clock=clock,
        )
        self.schedule = PullSchedule(
            images=config.pull.images,
            interval_s=config.pull.interval_s,
            backoff_base_s=config.pull.backoff_base_s,
            backoff_cap_s=config.pull.backoff_cap_s,
            now=clock(),
            rng=self._rng,
        )
        self._check_backoff = Backoff(
            CHECK_RETRY_BASE_S, CHECK_RETRY_CAP_S, floor_s=CHECK_RETRY_FLOOR_S, rng=self._rng
        )
        self._check_due: float | None = clock() if store.staged() else None
        self.status = StatusTracker(state_dir, enrollment, self.handler)
        self.worker = PullWorker(config.pull.backend, self.inbox.put)
        login = enrollment.mqtt
        self.link = MqttLink(
            login=login,
            client_id=device_client_id(enrollment.device_id),
            subscriptions=[login.credentials_topic, login.commands_topic],
            on_message=self._on_mqtt_message,
            hello=self.handler.hello,
            on_state=lambda up: self.inbox.put(_LinkState(up)),
            backoff=Backoff(
                config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s, rng=self._rng
            ),
            keepalive_s=config.mqtt.keepalive_s,
            ca_file=config.mqtt.ca_file,
        )
        logs.register_secret(login.password)
        for held in (store.current(), store.previous(), store.staged()):
            logs.register_secret(held.password if held else None)

    # -- threads' entry points ----------------------------------------------------------------
    def _on_mqtt_message(self, topic: str, payload: bytes) -> None:
        login = self.enrollment.mqtt
        kind = {login.credentials_topic: Kind.CREDENTIALS, login.commands_topic: Kind.COMMAND}
        if topic not in kind:
            log.debug("ignored a message on %s", topic)
        elif not self.inbox.put(_Message(kind[topic], payload)):
            log.warning("inbox full: dropped a message on %s (it will be delivered again)", topic)

    def request_stop(self) -> None:
        """Safe from a signal handler: a flag and a byte on a pipe."""
        self._stopping = True
        self.inbox.wake()

    # -- the main loop ------------------------------------------------------------------------
    def run(self) -> None:
        removed = auth_file.remove_leftovers(self.state_dir)
        if removed:
            log.info("removed %d leftover temporary auth file(s)", removed)
        self.status.started()
        self.worker.start()
        self.link.start()
        try:
            while not self._stopping:
                for event in self.inbox.wait(self._timeout()):
                    self._dispatch(event)
                self._due_work()
                self.status.flush()
        finally:
            log.info("stopping")
            self.link.stop()
            self.worker.stop()
            self.status.stopped()
            self.inbox.close()

    def _timeout(self) -> float | None:
        deadlines = [d for d in (self._check_due, self._pull_deadline()) if d is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self._clock())

    def _pull_deadline(self) -> float | None:
        return self.schedule.next_deadline() if self.store.current() else None

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, _Message):
            self._apply(self.handler.handle(event.kind, event.payload))
        elif isinstance(event, _LinkState):
            self.status.link(event.connected)
        else:
            self._pull_finished(event)

    def _apply(self, outcome: Outcome) -> None:
        for status in outcome.statuses:
            self.link.publish(status)
        now = self._clock()
        if outcome.check_pending:
            self._check_due = now + self._check_backoff.next_delay()
        elif self.store.staged() is None:
            self._check_due = None
            self._check_backoff.reset()
        if outcome.credentials_changed:
            current = self.store.current()
            logs.register_secret(current.password if current else None)
            self.schedule.credentials_changed(now)
        if outcome.pull is not None:
            self.schedule.request(outcome.pull, now)

    def _due_work(self) -> None:
        now = self._clock()
        if self._check_due is not None and now >= self._check_due:
            staged = self.store.staged()
            logs.register_secret(staged.password if staged else None)
            self._apply(self.handler.retry_staged())
        if self.store.current() is not None:
            for name in self.schedule.take_due(now):
                self._start_pull(name)

    # -- pulls ----------------------------------------------------------------------------------
    def _start_pull(self, name: str) -> None:
        current = self.store.current()
        if current is None:
            self.schedule.release([name])
            return
        pull = self.config.pull
        try:
            image = parse_image(name, current.login_server)
        except InvalidImage as error:
            self._pull_finished(PullDone(name, name, False, None, str(error)))
            return
        request = PullRequest(
            image=image,
            credentials=current,  # the newest proven password, read now
            output=pull.output or self.state_dir / IMAGES_DIR,
            state_dir=self.state_dir,
            tls_verify=pull.tls_verify,
            platform=pull.platform,
            timeout_s=pull.timeout_s,
        )
        if not self.worker.submit(name, request):  # never spin: count it as a failed pull
            full_name = image.full_name(current.login_server)
            self._pull_finished(PullDone(name, full_name, False, None, "too many pulls queued"))

    def _pull_finished(self, done: PullDone) -> None:
        now = self._clock()
        self.schedule.finished(done.name, ok=done.ok, now=now)
        result = PullResult.now(done.full_name, ok=done.ok, digest=done.digest, error=done.error)
        self.link.publish(result)
        self.status.pulled(result, auth_failed=done.auth_failed)
