"""When to pull which image. Configured images are pulled at start, then every ``interval``
(give or take ``JITTER_FRACTION``, so a fleet does not pull in step); a failure backs off
exponentially with jitter up to a cap instead (a refused login or a denied repository just as
any other failure: never hammer the registry or its token endpoint). A ``pull`` command asks for
images now, configured or not; an image named only by a command is pulled once.

New credentials make every image waiting out a failure due at once: the new password may be
exactly what it was missing. Pure bookkeeping: the caller owns the clock and the pulling.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from device_agent.runtime.backoff import Backoff

JITTER_FRACTION = 0.1


@dataclass
class _Entry:
    backoff: Backoff
    next_due: float
    periodic: bool
    in_flight: bool = False
    wanted_again: bool = False  # asked for while a pull of it was running
    failing: bool = False


@dataclass
class PullSchedule:
    images: tuple[str, ...]
    interval_s: float
    backoff_base_s: float
    backoff_cap_s: float
    now: float
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        for image in self.images:
            self._entries[image] = self._entry(periodic=True, due=self.now)

    def _entry(self, *, periodic: bool, due: float) -> _Entry:
        backoff = Backoff(self.backoff_base_s, self.backoff_cap_s, floor_s=0.0, rng=self.rng)
        return _Entry(backoff=backoff, next_due=due, periodic=periodic)

    def take_due(self, now: float) -> list[str]:
        """Images to pull now; they count as running until ``finished``."""
        due = []
        for image, entry in self._entries.items():
            if not entry.in_flight and entry.next_due <= now:
                entry.in_flight = True
                due.append(image)
        return due

    def request(self, images: tuple[str, ...], now: float) -> None:
        """A ``pull`` command: ``()`` means every configured image."""
        for image in images or self.images:
            entry = self._entries.get(image)
            if entry is None:
                self._entries[image] = self._entry(periodic=False, due=now)
            elif entry.in_flight:
                entry.wanted_again = True
            else:
                entry.next_due = now

    def credentials_changed(self, now: float) -> None:
        for entry in self._entries.values():
            if entry.failing and not entry.in_flight:
                entry.next_due = min(entry.next_due, now)

    def finished(self, image: str, *, ok: bool, now: float) -> float | None:
        """Record a pull's result; returns when the image is due next (None: not again)."""
        entry = self._entries.get(image)
        if entry is None:
            return None
        entry.in_flight, again = False, entry.wanted_again
        entry.wanted_again = False
        if ok:
            entry.backoff.reset()
            entry.failing = False
            jitter = self.rng.uniform(-JITTER_FRACTION, JITTER_FRACTION)
            entry.next_due = now + self.interval_s * (1 + jitter)
        else:
            entry.failing = True
            # At least the base: a full-jitter draw near zero must not turn into a hot loop.
            entry.next_due = now + max(self.backoff_base_s, entry.backoff.next_delay())
        if again:
            entry.next_due = now
        if not entry.periodic and not again:
            del self._entries[image]
            return None
        return entry.next_due

    def next_deadline(self) -> float | None:
        waiting = [e.next_due for e in self._entries.values() if not e.in_flight]
        return min(waiting) if waiting else None

    def release(self, images: list[str]) -> None:
        """Images taken but not pulled (no credentials yet): due again as before."""
        for image in images:
            entry = self._entries.get(image)
            if entry is not None:
                entry.in_flight = False
