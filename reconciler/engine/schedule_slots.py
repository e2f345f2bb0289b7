"""Time-of-day job slots shared by every replica: one schedule_runs row per job and slot, so a slot runs once
however many replicas reach it and however often they restart.

The first replica to reach a due slot inserts its row (INSERT … ON CONFLICT DO NOTHING, as procrastinate's
periodic defers do) and runs the job under a lease. A finished row is never claimed again. An unfinished
row whose lease is over (its claimer died, or its run failed and freed the lease) is taken over by one
replica, counting attempts. Once means once per finished run: a claimer that dies in the middle of a run
leaves work that the next attempt repeats, so a job's effects must be idempotent per slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import schedule_runs


@dataclass(frozen=True)
class SlotRun:
    job: str
    slot_at: datetime
    claimed_by: str
    lease_until: datetime
    attempts: int
    finished_at: datetime | None
    last_error: str | None


_COLUMNS = (schedule_runs.c.job, schedule_runs.c.slot_at, schedule_runs.c.claimed_by, schedule_runs.c.lease_until,
            schedule_runs.c.attempts, schedule_runs.c.finished_at, schedule_runs.c.last_error)


def claim_slot(engine: Engine, job: str, slot_at: datetime, worker: str, lease_seconds: float,
               now: datetime) -> bool:
    """True for the one replica that may run `job` for `slot_at` now; False when the slot is finished or
    another replica holds it."""
    s = schedule_runs
    lease_until = now + timedelta(seconds=lease_seconds)
    with engine.begin() as conn:
        if conn.execute(insert_ignoring_conflicts(conn.dialect.name, s, ["job", "slot_at"]).values(
                job=job, slot_at=slot_at, claimed_by=worker, lease_until=lease_until, attempts=1,
                created_at=now).returning(s.c.job)).first() is not None:
            return True
        # Two takers of one expired row: PostgreSQL re-checks the WHERE on the row the first one committed
        # (its lease is then in the future), SQLite's write transactions run one after the other.
        return bool(conn.execute(
            update(s).where(s.c.job == job, s.c.slot_at == slot_at, s.c.finished_at.is_(None),
                            s.c.lease_until <= now)
            .values(claimed_by=worker, lease_until=lease_until, attempts=s.c.attempts + 1)
        ).rowcount)


def finish_slot(engine: Engine, job: str, slot_at: datetime, worker: str, now: datetime) -> bool:
    """Mark the slot done for good; False when `worker` no longer holds it (its lease ran out and another
    replica took the slot over)."""
    s = schedule_runs
    with engine.begin() as conn:
        return bool(conn.execute(
            update(s).where(s.c.job == job, s.c.slot_at == slot_at, s.c.claimed_by == worker,
                            s.c.finished_at.is_(None))
            .values(finished_at=now)
        ).rowcount)


def fail_slot(engine: Engine, job: str, slot_at: datetime, worker: str, error: str, now: datetime,
              retry_after_seconds: float = 0.0) -> bool:
    """Record why the run failed and free the slot, so any replica may run it again from `now` +
    `retry_after_seconds` (while the slot is within its lateness). False when `worker` no longer held it."""
    s = schedule_runs
    with engine.begin() as conn:
        return bool(conn.execute(
            update(s).where(s.c.job == job, s.c.slot_at == slot_at, s.c.claimed_by == worker,
                            s.c.finished_at.is_(None))
            .values(last_error=error, lease_until=now + timedelta(seconds=retry_after_seconds))
        ).rowcount)


def load_slot(engine: Engine, job: str, slot_at: datetime) -> SlotRun | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(schedule_runs.c.job == job,
                                                   schedule_runs.c.slot_at == slot_at)).first()
    return SlotRun(*row) if row is not None else None
