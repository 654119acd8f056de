"""Token buckets per key in bounded memory: a soft limit on failed logins, and the rate at
which the server handles each device's status messages.

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


class TokenBuckets:
    """A bucket of ``burst`` tokens per key, refilled at ``refill_per_s``; the least recently
    seen keys are forgotten first once there are more than ``max_keys`` (a forgotten key starts
    again with a full bucket, so memory stays bounded whatever the keys)."""

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

    def _take(self, key: str, *, always: bool) -> bool:
        """Take one token from ``key``'s bucket; when it has none, take nothing (and answer
        False) unless ``always``, which empties it down to zero."""
        with self._lock:
            now = self._clock()
            bucket = self._refilled(key, now)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self._burst, now)
                if len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True
            if always:
                bucket.tokens = 0.0
            return False

    def take(self, key: str) -> bool:
        """True (and one token fewer) when ``key`` may act now; False when over its rate."""
        return self._take(key, always=False)

    def __len__(self) -> int:
        return len(self._buckets)


class FailureLimiter(TokenBuckets):
    """Failures are always counted; :meth:`retry_after` says whether a key is over its limit."""

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may fail again without being limited; 0 when it may now."""
        with self._lock:
            bucket = self._refilled(key, self._clock())
            if bucket is None or bucket.tokens >= 1:
                return 0.0
            return (1 - bucket.tokens) / self._rate

    def record_failure(self, key: str) -> None:
        self._take(key, always=True)
