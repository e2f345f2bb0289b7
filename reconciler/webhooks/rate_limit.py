"""A token bucket per key (here: per webhook endpoint), on an injectable clock."""
from __future__ import annotations

from datetime import datetime


class PerKeyRateLimiter:
    """`rate` events per second per key, with bursts of up to `rate` events."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, datetime]] = {}

    @property
    def interval_seconds(self) -> float:
        return 1.0 / self.rate

    def allow(self, key: str, now: datetime) -> bool:
        tokens, since = self._buckets.get(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - since).total_seconds() * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True
