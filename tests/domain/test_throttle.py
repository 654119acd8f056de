import pytest

from fleet.domain.throttle import FailureLimiter, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refill() -> None:
    clock = Clock()
    limiter = FailureLimiter(clock, burst=3, refill_per_s=0.5)
    for _ in range(3):
        assert limiter.retry_after("tok") == 0
        limiter.record_failure("tok")
    assert limiter.retry_after("tok") == pytest.approx(2.0)
    assert limiter.retry_after("other") == 0  # keys are independent
    clock.t += 2.0
    assert limiter.retry_after("tok") == 0
    limiter.record_failure("tok")
    assert limiter.retry_after("tok") == pytest.approx(2.0)  # the refilled one, spent again


def test_memory_is_bounded() -> None:
    limiter = FailureLimiter(Clock(), burst=1, max_keys=100)
    for i in range(1000):
        limiter.record_failure(f"10.0.{i // 250}.{i % 250}")
    assert len(limiter) == 100
    assert limiter.retry_after("10.0.0.0") == 0  # forgotten, the oldest first
    assert limiter.retry_after("10.0.3.249") == pytest.approx(5.0)  # the default 0.2/s refill


@pytest.mark.parametrize("kwargs", [{"burst": 0}, {"refill_per_s": 0}, {"max_keys": 0}])
def test_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FailureLimiter(Clock(), **kwargs)


def test_take_allows_a_burst_then_one_per_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock, burst=3, refill_per_s=0.5)
    assert [buckets.take("dev") for _ in range(5)] == [True, True, True, False, False]
    assert buckets.take("other")  # keys are independent
    clock.t += 1.9
    assert not buckets.take("dev")  # refused takes nothing: 0.95 of a token so far
    clock.t += 0.1
    assert buckets.take("dev") and not buckets.take("dev")
    clock.t += 3600  # a quiet hour refills the burst, never more
    assert [buckets.take("dev") for _ in range(4)] == [True, True, True, False]


def test_take_memory_is_bounded_and_a_forgotten_key_starts_full() -> None:
    buckets = TokenBuckets(Clock(), burst=1, refill_per_s=0.001, max_keys=10)
    assert buckets.take("first") and not buckets.take("first")
    for i in range(100):
        buckets.take(f"k{i}")
    assert len(buckets) == 10
    assert buckets.take("first")  # forgotten: a full bucket again


@pytest.mark.parametrize(
    ("burst", "rate", "keys"), [(0, 1.0, 10), (1, 0.0, 10), (1, -1.0, 10), (1, 1.0, 0)]
)
def test_bad_limits_are_refused(burst: int, rate: float, keys: int) -> None:
    with pytest.raises(ValueError):
        TokenBuckets(Clock(), burst=burst, refill_per_s=rate, max_keys=keys)
