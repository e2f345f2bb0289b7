"""Daily quotas per key, shared by every replica: at most `limit` uses of a key per day, e.g. Zoho's API calls
per day for the whole organisation ('zoho:<organization_id>').

One row per key holds the day it counts and its uses; a use is one conditional UPDATE, so replicas never
race and a new day starts the count again without a reset job. Days are UTC days: every replica agrees on
them whatever its time zone, and a provider whose day ends elsewhere is caught by its own refusal (the caller
pauses until the next day then).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import Engine, case, or_, select, update

from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import quotas


@dataclass(frozen=True)
class Use:
    """The outcome of `DailyQuota.take`: whether a use was counted, and the day's uses after it."""

    taken: bool
    used: int


def day_of(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).date().isoformat()


def next_day(moment: datetime) -> datetime:
    """When the UTC day of `moment` ends."""
    return datetime.combine(moment.astimezone(timezone.utc).date() + timedelta(days=1), time(), timezone.utc)


class DailyQuota:
    def __init__(self, engine: Engine, key: str, limit: int, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.key = key
        self.limit = limit
        self.clock = clock

    def take(self) -> Use:
        """Count one use now, unless today's `limit` uses are spent."""
        q = quotas
        now = self.clock()
        today = day_of(now)
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(conn.dialect.name, q, ["key"]).values(key=self.key, updated_at=now))
            used = conn.execute(
                update(q).where(q.c.key == self.key, or_(q.c.day != today, q.c.used < self.limit))
                .values(used=case((q.c.day == today, q.c.used + 1), else_=1), day=today, updated_at=now)
                .returning(q.c.used)).scalar()
            if used is not None:
                return Use(True, used)
            return Use(False, conn.execute(select(q.c.used).where(q.c.key == self.key)).scalar_one())

    def exhaust(self) -> None:
        """The other side says today's uses are spent (another client of the same account used them): count
        today as full, so no replica tries again before the next day."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(conn.dialect.name, quotas, ["key"]).values(key=self.key, updated_at=now))
            conn.execute(update(quotas).where(quotas.c.key == self.key)
                         .values(day=day_of(now), used=self.limit, updated_at=now))

    def used(self, now: datetime) -> int:
        """Uses counted on the day of `now`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(quotas.c.day, quotas.c.used).where(quotas.c.key == self.key)).first()
        return row.used if row is not None and row.day == day_of(now) else 0
