"""Exponential backoff with full jitter: each wait is drawn uniformly between a floor and a
ceiling that doubles after every failure, up to a cap. Full jitter spreads a fleet's retries
after a common outage (a broker restart, a registry down) instead of synchronising them.

    backoff = Backoff(base_s=1, cap_s=300)
    delay = backoff.next_delay()   # in [0, 1], then [0, 2], [0, 4] ... [0, 300]
    backoff.reset()                # after a success
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# 2**MAX_EXPONENT times any sensible base is far above any sensible cap; it keeps the
# arithmetic small however many failures there were.
MAX_EXPONENT = 32


@dataclass
class Backoff:
    """``floor_s`` is the shortest wait ever returned (0 for full jitter)."""

    base_s: float
    cap_s: float
    floor_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.floor_s <= self.cap_s or not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 <= floor <= cap and 0 < base <= cap")

    def ceiling(self) -> float:
        """The largest wait the next failure may get."""
        exponent = min(self.failures, MAX_EXPONENT)
        return max(self.floor_s, min(self.cap_s, self.base_s * 2**exponent))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        ceiling = self.ceiling()
        self.failures += 1
        return self.rng.uniform(self.floor_s, ceiling)

    def reset(self) -> None:
        self.failures = 0
