import pytest

from fleet.domain.throttle import FailureLimiter


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
