"""One rate limiter shared by every worker thread of a teacher: requests/min, tokens/min, 429 pauses.

Each budget is a token bucket (Groq's and OpenAI's model of a limit): ``capacity`` units that
refill at ``rate`` per second. Budgets start from the configured ``requests_per_minute`` /
``tokens_per_minute`` (a full minute's worth, refilled over a minute) and then follow the
server's ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*``
headers: capacity is the limit, the refill rate is ``(limit - remaining) / reset`` (so a
per-day request limit and a per-minute token limit are both read right), and the level is
never above what the server last reported plus the refill since, less what was sent after.

A worker reserves its request's estimated cost before sending and settles the real usage
afterwards. A 429 pauses the whole pool until ``retry-after`` has passed, however long that is
(the SDKs cap their own wait at 60 s, so 429s are not left to them).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
KINDS = ("requests", "tokens")


def parse_duration(text: str | None) -> float | None:
    """Seconds in a rate-limit header value: ``"7.66s"``, ``"2m59.56s"``, ``"1h0m0s"``, ``"20ms"``, ``"1.5"``."""
    if text is None:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks us to wait: ``retry-after-ms``, ``retry-after`` (seconds), else the later reset."""
    if headers.get("retry-after-ms") is not None:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    waits = [
        parse_duration(headers.get(name))
        for name in ("retry-after", "x-ratelimit-reset-tokens", "x-ratelimit-reset-requests")
    ]
    if waits[0] is not None:
        return waits[0]
    resets = [w for w in waits[1:] if w is not None]
    return max(resets) if resets else None


@dataclass
class Bucket:
    """``level`` units available at time ``updated``, refilled at ``rate``/s up to ``capacity``."""

    capacity: float = math.inf
    rate: float = math.inf
    level: float = math.inf
    updated: float = 0.0
    sent: float = 0.0  # units ever reserved: tells which reservations a response's header predates

    def refill(self, now: float) -> None:
        if self.rate == math.inf:
            self.level = self.capacity
        elif self.level < self.capacity:
            self.level = min(self.capacity, self.level + self.rate * (now - self.updated))
        self.updated = now

    def wait_s(self, cost: float) -> float:
        """Seconds until ``cost`` units (at most a full bucket) are available; 0 when they are."""
        need = min(cost, self.capacity) - self.level
        if need <= 0:
            return 0.0
        return need / self.rate if self.rate > 0 else math.inf

    def observe(self, limit: float | None, remaining: float | None, reset_s: float | None, sent_through: float) -> None:
        """Follow a response's headers; ``sent_through`` is ``sent`` just after that request was reserved."""
        if limit is not None and limit > 0:
            self.capacity = limit
            if remaining is not None and reset_s and reset_s > 0 and remaining < limit:
                self.rate = (limit - remaining) / reset_s
            elif self.rate == math.inf:
                self.rate = limit / 60.0
        if remaining is not None:
            sent_after = self.sent - sent_through  # reserved after the server counted that request
            self.level = min(self.level, remaining - sent_after, self.capacity)


@dataclass(frozen=True)
class Reservation:
    """What one request reserved, and the buckets' ``sent`` counters just after (to read its headers)."""

    tokens: float
    sent_through: dict[str, float] = field(default_factory=dict)


class RateLimiter:
    """Thread-safe; ``clock`` and ``sleep`` are injectable so long pauses are testable without waiting."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        now = clock()
        self.buckets = {kind: Bucket(updated=now) for kind in KINDS}
        for kind, per_minute in (("requests", requests_per_minute), ("tokens", tokens_per_minute)):
            if per_minute is not None:
                if per_minute <= 0:
                    raise ValueError(f"{kind}_per_minute must be > 0, got {per_minute}")
                self.buckets[kind] = Bucket(per_minute, per_minute / 60.0, per_minute, now)
        self.paused_until = now
        self.n_rate_limited = 0
        self.waited_s = 0.0

    def acquire(self, tokens: float) -> Reservation:
        """Block until the pool is not paused and both budgets allow one request of ``tokens``."""
        while True:
            with self._lock:
                now = self._clock()
                for bucket in self.buckets.values():
                    bucket.refill(now)
                wait = max(
                    self.paused_until - now, self.buckets["requests"].wait_s(1), self.buckets["tokens"].wait_s(tokens)
                )
                if wait <= 0:
                    for kind, cost in (("requests", 1.0), ("tokens", tokens)):
                        self.buckets[kind].level -= cost
                        self.buckets[kind].sent += cost
                    return Reservation(tokens, {kind: b.sent for kind, b in self.buckets.items()})
                if wait == math.inf:
                    raise RuntimeError("the rate limit allows no requests at all (a budget refills at rate 0)")
                self.waited_s += wait
            self._sleep(wait)

    def settle(self, reservation: Reservation, used_tokens: float | None, headers: Mapping[str, str]) -> None:
        """Replace the estimate with the real usage and follow the response's rate-limit headers."""
        with self._lock:
            now = self._clock()
            tokens = self.buckets["tokens"]
            tokens.refill(now)
            if used_tokens is not None:
                tokens.level += reservation.tokens - used_tokens
            for kind, bucket in self.buckets.items():
                bucket.observe(
                    _number(headers.get(f"x-ratelimit-limit-{kind}")),
                    _number(headers.get(f"x-ratelimit-remaining-{kind}")),
                    parse_duration(headers.get(f"x-ratelimit-reset-{kind}")),
                    reservation.sent_through[kind],
                )

    def rate_limited(self, reservation: Reservation, headers: Mapping[str, str], attempt: int) -> float:
        """A 429: refund the reservation and pause every worker; returns the pause in seconds.

        Without ``retry-after`` (or reset) headers the pause backs off exponentially: 1, 2, 4 … 60 s.
        """
        wait = retry_after_s(headers)
        if wait is None or wait <= 0:
            wait = min(60.0, 2.0**attempt)
        with self._lock:
            now = self._clock()
            self.n_rate_limited += 1
            self.paused_until = max(self.paused_until, now + wait)
            for kind, cost in (("requests", 1.0), ("tokens", reservation.tokens)):
                self.buckets[kind].refill(now)
                self.buckets[kind].level = min(self.buckets[kind].level + cost, 0.0)
        log.warning("rate limited (429): every worker pauses %.1f s", wait)
        return wait

    def refund(self, reservation: Reservation) -> None:
        """Give back a reservation the server never charged (a 413, a connection failure)."""
        self.settle(reservation, 0.0, {})


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
