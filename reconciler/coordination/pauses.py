"""Pause and probe per key, shared by every replica: a provider's whole flow ('mtn') or one webhook
endpoint ('webhook:<url>').

A key is paused until `paused_until`. When that time has passed the key is not simply open again: one
replica at a time takes the probe (one conditional UPDATE), tries the other side once, and then either
resumes the key or pauses it again. A circuit breaker is the same thing counted: consecutive failures
open the pause, each failed probe doubles it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.operator_actions import record_operator_action
from reconciler.engine.schema import pauses

PROBE_LEASE_SECONDS = 60.0  # a replica that took the probe and died frees it after this long


@dataclass(frozen=True)
class Pause:
    key: str
    reason: str | None = None
    detail: str | None = None
    paused_until: datetime | None = None
    consecutive_failures: int = 0

    @property
    def paused(self) -> bool:
        """Paused now, or its time is up and a probe must open it."""
        return self.paused_until is not None

    def holds(self, now: datetime) -> bool:
        """Still inside the pause: nobody may try the other side, not even a probe."""
        return self.paused_until is not None and self.paused_until > now


_COLUMNS = (pauses.c.key, pauses.c.reason, pauses.c.detail, pauses.c.paused_until, pauses.c.consecutive_failures)
_OPEN = {"reason": None, "detail": None, "paused_until": None, "consecutive_failures": 0, "probe_by": None,
         "probe_until": None}


class Pauses:
    """The pauses table behind a small API; every change is one statement, so replicas never race."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> Pause:
        return self.get_many([key])[key]

    def get_many(self, keys: Iterable[str]) -> dict[str, Pause]:
        keys = set(keys)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_COLUMNS).where(pauses.c.key.in_(keys))).all()
        found = {key: Pause(key) for key in keys}
        found.update({row.key: Pause(*row) for row in rows})
        return found

    def all_paused(self, prefix: str | None = None) -> list[Pause]:
        """Keys paused now or waiting for their probe, optionally only those starting with `prefix`."""
        query = select(*_COLUMNS).where(pauses.c.paused_until.is_not(None)).order_by(pauses.c.key)
        with self.engine.connect() as conn:
            return [Pause(*row) for row in conn.execute(query) if prefix is None or row.key.startswith(prefix)]

    def count_holding(self, prefix: str, now: datetime) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(pauses).where(
                pauses.c.key.startswith(prefix, autoescape=True), pauses.c.paused_until > now))

    def pause(self, key: str, reason: str, until: datetime, now: datetime, detail: str | None = None) -> Pause:
        """Stop `key` until `until`; a probe held by anyone is given up (the probe's answer is this pause)."""
        return self._set(key, now, reason=reason, detail=detail, paused_until=until, probe_by=None, probe_until=None)

    def resume(self, key: str, now: datetime, reason: str | None = None) -> Pause:
        """Open `key` and close its breaker; with `reason`, only a pause for that reason (another pause set
        meanwhile stands). The key's state after."""
        if reason is None:
            return self._set(key, now, **_OPEN)
        with self.engine.begin() as conn:
            row = conn.execute(update(pauses).where(pauses.c.key == key, pauses.c.reason == reason)
                               .values(**_OPEN, updated_at=now).returning(*_COLUMNS)).first()
        return Pause(*row) if row is not None else self.get(key)

    def resume_by(self, key: str, actor: str, now: datetime) -> Pause | None:
        """A person opens `key` now, whatever paused it; recorded in operator_actions with who did it and what
        it ended. The pause it ended, or None when the key was not paused (then nothing is recorded)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(*_COLUMNS).where(pauses.c.key == key, pauses.c.paused_until.is_not(None))
                               .with_for_update()).first()
            if row is None:
                return None
            ended = Pause(*row)
            conn.execute(update(pauses).where(pauses.c.key == key).values(**_OPEN, updated_at=now))
            record_operator_action(conn, actor, "resume", key, now,
                                   f"was paused ({ended.reason}) until {ended.paused_until.isoformat()}: {ended.detail}")
        return ended

    def take_probe(self, key: str, worker: str, now: datetime,
                   lease_seconds: float = PROBE_LEASE_SECONDS, early: bool = False) -> bool:
        """True for the one replica that may try the other side now that the pause is over (or, `early`, even
        while it holds: this replica has something new to try, such as the key it was just started with). The
        others get False until that probe resumes or pauses the key again (or its lease runs out)."""
        p = pauses
        over = p.c.paused_until.is_not(None) if early else p.c.paused_until <= now
        with self.engine.begin() as conn:
            return bool(conn.execute(
                update(p).where(p.c.key == key, over,
                                or_(p.c.probe_until.is_(None), p.c.probe_until < now, p.c.probe_by == worker))
                .values(probe_by=worker, probe_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            ).rowcount)

    def record_failure(self, key: str, now: datetime, threshold: int, base_pause_seconds: float,
                       max_pause_seconds: float, reason: str = "failing") -> Pause:
        """Count a failure (atomically across replicas). From `threshold` consecutive failures on the key is
        paused, for `base_pause_seconds` doubled by every failure past the threshold, at most `max_pause_seconds`."""
        p = pauses
        with self.engine.begin() as conn:
            _ensure(conn, key, now)
            failures = conn.execute(update(p).where(p.c.key == key)
                                    .values(consecutive_failures=p.c.consecutive_failures + 1, updated_at=now)
                                    .returning(p.c.consecutive_failures)).scalar_one()
            if failures >= threshold:
                seconds = min(base_pause_seconds * 2 ** (failures - threshold), max_pause_seconds)
                conn.execute(update(p).where(p.c.key == key).values(
                    reason=reason, paused_until=now + timedelta(seconds=seconds), probe_by=None, probe_until=None))
            return Pause(*conn.execute(select(*_COLUMNS).where(p.c.key == key)).one())

    def record_success(self, key: str, now: datetime) -> Pause:
        """A success closes the breaker; a key that never failed is not written at all."""
        p = pauses
        with self.engine.begin() as conn:
            conn.execute(update(p).where(p.c.key == key, and_(or_(p.c.consecutive_failures > 0,
                                                                   p.c.paused_until.is_not(None))))
                         .values(**_OPEN, updated_at=now))
        return Pause(key)

    def _set(self, key: str, now: datetime, **values: object) -> Pause:
        with self.engine.begin() as conn:
            _ensure(conn, key, now)
            return Pause(*conn.execute(update(pauses).where(pauses.c.key == key)
                                       .values(**values, updated_at=now).returning(*_COLUMNS)).one())


def _ensure(conn: Connection, key: str, now: datetime) -> None:
    conn.execute(insert_ignoring_conflicts(conn.dialect.name, pauses, ["key"]).values(key=key, updated_at=now))
