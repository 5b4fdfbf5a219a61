"""The shared rate limiter on a simulated clock: budgets, Groq's headers, 429 pauses of any length."""

from __future__ import annotations

import math

import pytest

from deepcoder.policies.rate_limit import RateLimiter, parse_duration, retry_after_s


class FakeClock:
    """Time that moves only when someone sleeps: long waits are checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(**kwargs) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(clock=clock, sleep=clock.sleep, **kwargs), clock


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("7.66s", 7.66),
        ("2m59.56s", 179.56),
        ("1h0m0s", 3600.0),
        ("20ms", 0.02),
        ("1.5", 1.5),
        ("120", 120.0),
        (None, None),
        ("soon", None),
        ("5s later", None),
    ],
)
def test_parse_duration_reads_groq_and_openai_reset_values(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_prefers_milliseconds_then_seconds_then_the_later_reset():
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "90"}) == 90.0
    assert retry_after_s({"x-ratelimit-reset-tokens": "7.5s", "x-ratelimit-reset-requests": "2m"}) == 120.0
    assert retry_after_s({}) is None


def test_tokens_per_minute_budget_spaces_requests_at_the_refill_rate():
    limit, clock = limiter(tokens_per_minute=600)  # 10 tokens/s, a full minute to start with
    for _ in range(20):
        limit.settle(limit.acquire(50), 50, {})
    assert clock.now - 1000.0 == pytest.approx((20 * 50 - 600) / 10)


def test_requests_per_minute_budget():
    limit, clock = limiter(requests_per_minute=60)
    for _ in range(70):
        limit.acquire(0)
    assert clock.now - 1000.0 == pytest.approx(10.0)


def test_a_429_pauses_every_worker_for_retry_after_even_past_the_sdk_cap():
    limit, clock = limiter()
    reservation = limit.acquire(100)
    assert limit.rate_limited(reservation, {"retry-after": "90"}, attempt=1) == 90
    limit.acquire(100)  # any worker's next request waits for the pause
    assert sum(clock.slept) == pytest.approx(90) and limit.n_rate_limited == 1


def test_a_429_without_headers_backs_off_exponentially_up_to_a_minute():
    limit, _ = limiter()
    assert [limit.rate_limited(limit.acquire(1), {}, attempt) for attempt in (1, 2, 3, 9)] == [2, 4, 8, 60]


def test_headers_set_capacity_and_rate_and_discount_later_requests():
    limit, clock = limiter()
    first = limit.acquire(400)
    second = limit.acquire(300)  # sent after the first, before its answer arrived
    # the server counted the first request: 600 of 1000 left, full again in 8 s → 50 tokens/s
    limit.settle(
        first,
        400,
        {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "600", "x-ratelimit-reset-tokens": "8s"},
    )
    bucket = limit.buckets["tokens"]
    assert bucket.capacity == 1000 and bucket.rate == pytest.approx(50.0)
    assert bucket.level == pytest.approx(600 - 300)  # the second request is not in that header yet
    limit.settle(second, 300, {})
    limit.acquire(500)
    assert clock.now - 1000.0 == pytest.approx((500 - 300) / 50)


def test_a_per_day_request_header_gives_a_per_day_rate():
    limit, _ = limiter()
    limit.settle(
        limit.acquire(1),
        1,
        {
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-remaining-requests": "14399",
            "x-ratelimit-reset-requests": "6s",
        },
    )
    assert limit.buckets["requests"].rate == pytest.approx(1 / 6)


def test_unknown_limits_never_wait_and_bad_budgets_are_refused():
    limit, clock = limiter()
    for _ in range(100):
        limit.settle(limit.acquire(10_000), 10_000, {})
    assert clock.slept == [] and limit.buckets["tokens"].capacity == math.inf
    with pytest.raises(ValueError, match="tokens_per_minute must be > 0"):
        RateLimiter(tokens_per_minute=0)
