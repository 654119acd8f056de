"""``fleet-agent run``: load the enrollment, keys, store and configuration, then run the agent
until SIGTERM or SIGINT, which stop it gracefully (the running pull is cancelled, the MQTT
session is closed with a DISCONNECT, the status file says it stopped)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType

from device_agent.runtime.agent import Agent
from device_agent.state.config import AgentConfig
from device_agent.state.enrollment import load_enrollment
from device_agent.state.keys import load_device_keys
from device_agent.state.state_dir import secure_state_dir
from device_agent.state.store import open_store

log = logging.getLogger(__name__)


def build_agent(state_dir: Path, config: AgentConfig) -> Agent:
    """Raises StateDirError, NotEnrolled, InvalidEnrollment or KeyFileError with a message for
    the operator."""
    secure_state_dir(state_dir)
    enrollment = load_enrollment(state_dir)
    keys = load_device_keys(state_dir)
    store, moved = open_store(state_dir)
    if moved is not None:
        log.error("the credentials will be delivered again (hello with version 0)")
    if store.stale_temps_removed:
        log.info("removed %d stale temporary file(s)", store.stale_temps_removed)
    log.info(
        "device %s (%s), broker %s, credentials version %d",
        enrollment.device_id,
        enrollment.status,
        enrollment.mqtt.url,
        store.current().version if store.current() else 0,
    )
    return Agent(state_dir=state_dir, config=config, enrollment=enrollment, keys=keys, store=store)


def run(state_dir: Path, config: AgentConfig) -> int:
    agent = build_agent(state_dir, config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        agent.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    agent.run()
    return 0
