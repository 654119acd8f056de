"""A soft limit on failed logins: token buckets of failures, per key, in bounded memory.

Soft means that it never stands between the holder of a right password and the registry: the
endpoint checks the password first and consults the limiter only for failures, answering 429
instead of 401 once a key (a token name, a client address) has failed too often. Guessing a
214-bit generated password is hopeless anyway; the limit keeps bursts cheap and visible.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BURST = 10  # failures allowed at once
DEFAULT_REFILL_PER_S = 0.2  # then one more every 5 s
DEFAULT_MAX_KEYS = 100_000  # least recently seen keys are forgotten first


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class FailureLimiter:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        burst: int = DEFAULT_BURST,
        refill_per_s: float = DEFAULT_REFILL_PER_S,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if burst < 1 or refill_per_s <= 0 or max_keys < 1:
            raise ValueError("burst, refill rate and key count must be positive")
        self._clock = clock
        self._burst = float(burst)
        self._rate = refill_per_s
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        return bucket

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may fail again without being limited; 0 when it may now."""
        with self._lock:
            bucket = self._refilled(key, self._clock())
            if bucket is None or bucket.tokens >= 1:
                return 0.0
            return (1 - bucket.tokens) / self._rate

    def record_failure(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            bucket = self._refilled(key, now)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self._burst, now)
                if len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
            bucket.tokens = max(0.0, bucket.tokens - 1)

    def __len__(self) -> int:
        return len(self._buckets)
