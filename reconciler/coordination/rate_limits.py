"""Rate limits per key, shared by every replica: at most `limit` grants in any `window_seconds`, e.g. the
reseller's requests-per-second ceiling ('mtn') or Zoho's calls per minute for the whole organisation.

A sliding log, exact: the key's row keeps the grant times (Unix seconds) still inside the window, and a
grant is taken under the row's lock. A token bucket would be cheaper but lets twice the limit through in
a window that straddles a refill.
"""
from __future__ import annotations

import json
import math
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select, update

from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import rate_limits

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class RateLimit:
    """One key's limit; replicas building a RateLimit for the same key share it through the key's row."""

    def __init__(self, engine: Engine, key: str, limit: int, window_seconds: float, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.key = key
        self.limit = limit
        self.window_seconds = window_seconds
        self.clock = clock

    @classmethod
    def per_second(cls, engine: Engine, key: str, rate: float, clock: Clock = utcnow) -> "RateLimit":
        """`rate` calls per second, fractions too: 2.5/s is 3 per 1.2 s, 0.5/s is 1 per 2 s; 0 is no limit."""
        if rate <= 0:
            return cls(engine, key, 0, 1.0, clock)
        limit = math.ceil(rate)
        return cls(engine, key, limit, limit / rate, clock)

    def try_acquire(self) -> float:
        """0.0 when a grant was taken now, else the seconds until the window has room again.
        A limit <= 0 is no limit: granted at once, without touching the database."""
        if self.limit <= 0:
            return 0.0
        r = rate_limits
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(conn.dialect.name, r, ["key"]).values(key=self.key))
            stored = conn.execute(select(r.c.grants).where(r.c.key == self.key).with_for_update()).scalar_one()
            # Read under the lock, so grants are stamped in the order they were taken. Whole microseconds
            # (the clock's resolution): a grant one window old must leave exactly then, not an ulp later.
            now = self.clock()
            now_us = (now - _EPOCH) // _MICROSECOND
            window_us = round(self.window_seconds * 1_000_000)
            grants = sorted(g for g in (round(s * 1_000_000) for s in json.loads(stored)) if g > now_us - window_us)
            if len(grants) >= self.limit:
                # room for one more once all but limit - 1 have left (more than one if the limit was lowered)
                return (grants[len(grants) - self.limit] + window_us - now_us) / 1_000_000
            grants.append(now_us)
            conn.execute(update(r).where(r.c.key == self.key)
                         .values(grants=json.dumps([g / 1_000_000 for g in grants]), updated_at=now))
        return 0.0

    def in_window(self, now: datetime) -> int:
        """Grants taken in the window that ends at `now` (for status pages: no lock, no write)."""
        if self.limit <= 0:
            return 0
        with self.engine.connect() as conn:
            stored = conn.execute(select(rate_limits.c.grants).where(rate_limits.c.key == self.key)).scalar()
        start = (now - _EPOCH).total_seconds() - self.window_seconds
        return sum(1 for grant in json.loads(stored or "[]") if grant > start)

    def acquire(self, stop: threading.Event | None = None, max_wait_seconds: float | None = None) -> bool:
        """Wait for a grant. False once `stop` is set, or as soon as the wait would pass `max_wait_seconds`."""
        stop = threading.Event() if stop is None else stop
        started = self.clock()
        while not stop.is_set():
            wait = self.try_acquire()
            if wait == 0.0:
                return True
            if max_wait_seconds is not None and (self.clock() - started).total_seconds() + wait > max_wait_seconds:
                return False
            stop.wait(wait)
        return False
