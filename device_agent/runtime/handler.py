"""What the agent does with each envelope it receives, apart from MQTT: open it, refuse it or
act on it, and say what to report. The main thread is its only caller.

Credentials: open (signature, device, version, decryption) → stage (durable, version recorded)
→ check the password at the token endpoint → promote and ack. A refused password is discarded
and rejected; an unanswered check leaves it staged, and ``retry_staged`` asks again later.

Commands: ``wipe`` forgets the credentials older than itself (a credential delivered after the
wipe was sent is newer and stays: the version counter is shared by both kinds); ``pull`` asks
for pulls. Both are acked once done; unknown commands are rejected.

Duplicates (the retained copy of the envelope the device already holds, sent again on every
reconnect) are dropped quietly; any other envelope that is not newer is a replay and refused.
Every refusal is counted by reason and reported, at most ``MAX_REJECTS_PER_WINDOW`` per window.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device_agent import __version__
from device_agent.protocol.envelope import (
    EnvelopeError,
    Kind,
    Opened,
    claimed_version,
    open_envelope,
)
from device_agent.protocol.messages import COMMAND, CREDENTIALS, Ack, Hello, Reject, StatusMessage
from device_agent.runtime.token_check import PasswordCheck, Verdict
from device_agent.state.credentials import Credentials, InvalidCredentials
from device_agent.state.store import CredentialStore

log = logging.getLogger(__name__)

MAX_REJECTS_PER_WINDOW = 10
REJECT_WINDOW_S = 60.0
MAX_PULL_IMAGES = 100


@dataclass
class Outcome:
    statuses: list[StatusMessage] = field(default_factory=list)
    pull: tuple[str, ...] | None = None  # () means the configured images
    credentials_changed: bool = False
    check_pending: bool = False  # a staged password waits for the token endpoint


class EnvelopeHandler:
    def __init__(
        self,
        *,
        device_id: str,
        device_key: X25519PrivateKey,
        server_key: Ed25519PublicKey,
        store: CredentialStore,
        check_password: PasswordCheck,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = device_id
        self._device_key = device_key
        self._server_key = server_key
        self.store = store
        self._check_password = check_password
        self._clock = clock
        self.refusals: Counter[str] = Counter()
        self.duplicates = 0
        self._window_start = clock()
        self._window_rejects = 0

    # -- entry points ---------------------------------------------------------------------
    def handle(self, kind: Kind, data: bytes) -> Outcome:
        """One message from the credentials (``kind`` credentials) or commands topic."""
        if not data:  # an emptied retained message: nothing to do
            return Outcome()
        last = self.store.last_version(kind.value)
        try:
            # One below the last accepted version, so that the retained copy of what the
            # device holds opens and is recognised as such instead of counting as a replay.
            opened = open_envelope(
                data,
                device_id=self.device_id,
                device_private_key=self._device_key,
                server_public_key=self._server_key,
                last_version=max(0, last - 1),
            )
        except EnvelopeError as error:
            return self._refuse(kind, claimed_version(data), type(error).__name__, str(error))
        if opened.kind is not kind:
            return self._refuse(kind, opened.version, "WrongKind", f"{opened.kind} on {kind} topic")
        if opened.version <= last:
            if self._is_duplicate(opened):
                self.duplicates += 1
                log.debug("%s version %d: already held", kind.value, opened.version)
                return Outcome(statuses=self._ack_again(opened))
            detail = f"version {opened.version} is not newer than {last}"
            return self._refuse(kind, opened.version, "StaleVersion", detail)
        if kind is Kind.CREDENTIALS:
            return self._credentials(opened)
        return self._command(opened)

    def retry_staged(self) -> Outcome:
        """Ask the token endpoint again about the staged password, if there is one."""
        staged = self.store.staged()
        return Outcome() if staged is None else self._prove(staged)

    def hello(self) -> Hello:
        """The hello message: the proven credential's version (never a staged one: the server
        takes it as an acknowledgement) and the last command carried out."""
        current = self.store.current()
        versions = {
            CREDENTIALS: current.version if current else 0,
            COMMAND: self.store.last_version(COMMAND),
        }
        return Hello(versions=versions, agent=__version__)

    def _ack_again(self, opened: Opened) -> list[StatusMessage]:
        """A copy of what is already held and proven is acknowledged again: the server sends
        it again only when it never heard the first acknowledgement."""
        if opened.kind is Kind.COMMAND:
            return [Ack(COMMAND, opened.version)]
        current = self.store.current()
        if current is not None and current.version == opened.version:
            return [Ack(CREDENTIALS, current.version, current.slot)]
        return []  # staged, still being proven: its acknowledgement comes after the check

    # -- credentials ----------------------------------------------------------------------
    def _is_duplicate(self, opened: Opened) -> bool:
        if opened.kind is Kind.COMMAND:
            return opened.version == self.store.last_version(Kind.COMMAND.value)
        held = (self.store.current(), self.store.staged())
        return any(c is not None and c.version == opened.version for c in held)

    def _credentials(self, opened: Opened) -> Outcome:
        try:
            new = Credentials.from_payload(opened.payload, opened.version)
        except InvalidCredentials as error:
            self.store.record_version(Kind.CREDENTIALS.value, opened.version)
            return self._refuse(Kind.CREDENTIALS, opened.version, "InvalidPayload", str(error))
        self.store.stage(new)
        log.info("credentials version %d (%s) staged; checking it", new.version, new.slot)
        return self._prove(new)

    def _prove(self, staged: Credentials) -> Outcome:
        verdict = self._check_password(staged)
        if verdict is Verdict.WORKS:
            self.store.promote()
            log.info("credentials version %d (%s) in use", staged.version, staged.slot)
            ack = Ack(CREDENTIALS, staged.version, staged.slot)
            return Outcome(statuses=[ack], credentials_changed=True)
        if verdict is Verdict.REFUSED:
            self.store.discard_staged()
            detail = "the token endpoint refused the new password"
            return self._refuse(Kind.CREDENTIALS, staged.version, "CredentialsRefused", detail)
        log.info("credentials version %d: token endpoint unavailable; will retry", staged.version)
        return Outcome(check_pending=True)

    # -- commands -------------------------------------------------------------------------
    def _command(self, opened: Opened) -> Outcome:
        command = opened.payload.get("command")
        if command == "wipe":
            return self._wipe(opened.version)
        if command == "pull":
            images = opened.payload.get("images", [])
            if (
                not isinstance(images, list)
                or len(images) > MAX_PULL_IMAGES
                or not all(isinstance(i, str) for i in images)
            ):
                self.store.record_version(Kind.COMMAND.value, opened.version)
                return self._refuse(Kind.COMMAND, opened.version, "InvalidPayload", "bad images")
            self.store.record_version(Kind.COMMAND.value, opened.version)
            log.info("pull command version %d: %d image(s)", opened.version, len(images))
            return Outcome(statuses=[Ack(COMMAND, opened.version)], pull=tuple(images))
        self.store.record_version(Kind.COMMAND.value, opened.version)
        return self._refuse(Kind.COMMAND, opened.version, "UnknownCommand", repr(command)[:80])

    def _wipe(self, version: int) -> Outcome:
        newest = self.store.last_version(Kind.CREDENTIALS.value)
        if newest > version:
            log.warning(
                "wipe version %d predates credentials version %d: keeping them", version, newest
            )
            changed = False
        else:
            self.store.wipe()  # before recording the version: a crash between repeats the wipe
            log.warning("wipe command version %d: registry credentials forgotten", version)
            changed = True
        self.store.record_version(Kind.COMMAND.value, version)
        return Outcome(statuses=[Ack(COMMAND, version)], credentials_changed=changed)

    # -- refusals -------------------------------------------------------------------------
    def _refuse(self, kind: Kind, version: int | None, reason: str, detail: str) -> Outcome:
        self.refusals[reason] += 1
        log.warning(
            "refused a %s envelope (version %s): %s: %s", kind.value, version, reason, detail
        )
        if not self._may_report():
            return Outcome()
        return Outcome(statuses=[Reject(kind.value, version, reason)])

    def _may_report(self) -> bool:
        now = self._clock()
        if now - self._window_start >= REJECT_WINDOW_S:
            self._window_start, self._window_rejects = now, 0
        self._window_rejects += 1
        return self._window_rejects <= MAX_REJECTS_PER_WINDOW
