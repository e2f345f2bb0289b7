"""The outbox engine: claim due rows under a lease, finalise them fenced on the owner, rescue expired leases.

Every job works through this module, for every outbox table. A claim is one statement committed at
once, so no transaction is ever held across a provider call. Leases, not locks: a row belongs to
`locked_by` until `locked_until`; after that the rescuer may take it back, and every later write by
the old owner is refused by the fence (`status = 'in_flight' AND locked_by = :me`).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, RowMapping, Table, select, update

from reconciler.engine import metrics
from reconciler.engine.clock import Clock, utcnow
from reconciler.engine.drivers import driver_for
from reconciler.engine.drivers.common import IN_FLIGHT_SQL, Transition, record_history
from reconciler.engine.events import Event, emit_events
from reconciler.engine.logs import one_line
from reconciler.engine.schema import DEAD, IN_DOUBT, IN_FLIGHT, QUEUED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """What a finishing step adds to its outcome: more columns, more events."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()


# Writes that must stand or fall with the outcome (a licence provisioned with the order's completion): run in the
# finalise transaction, only while the row's lease still holds, given that connection and the finalise time.
FinishStep = Callable[[Connection, datetime], Completion]


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed row: the status it moves to, why, and the columns set with it."""

    row_id: int
    status: str
    cause: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # queued for delivery only if this outcome is written
    finish: FinishStep | None = None  # run in the finalise transaction, only if this outcome is written


StepHook = Callable[[Mapping[str, Any], Outcome], None]  # (the row as read before, the outcome written)


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry budget of an outbox: a delay per attempt, with jitter; past the schedule, dead."""

    schedule_seconds: tuple[float, ...]
    jitter: float = 0.2

    def exhausted(self, attempts: int) -> bool:
        """Has a row that made `attempts` attempts used up its budget?"""
        return attempts > len(self.schedule_seconds)

    def delay_seconds(self, attempts: int, rng: Callable[[], float]) -> float:
        return self.schedule_seconds[attempts - 1] * (1 + self.jitter * (2 * rng() - 1))


@dataclass(frozen=True)
class OutboxPolicy:
    """What an outbox's owner (a provider, the webhook sender) declares: its table, its retry schedule, and
    where a rescued lease goes: in_doubt when the work may have reached the other side and cannot be
    repeated safely, queued when repeating it is harmless."""

    table: Table
    retry_schedule_seconds: tuple[float, ...]
    rescue_status: str
    on_rescued: StepHook | None = None  # told of each rescued row once written, e.g. to log the order's step

    @property
    def retries(self) -> RetryPolicy:
        return RetryPolicy(self.retry_schedule_seconds)

    def outbox(self, engine: Engine, worker_id: str, lease_seconds: float, clock: Clock = utcnow) -> "Outbox":
        return Outbox(engine, self.table, worker_id, lease_seconds=lease_seconds, clock=clock,
                      retry_schedule_seconds=self.retry_schedule_seconds, rescue_status=self.rescue_status,
                      on_rescued=self.on_rescued)


@dataclass(frozen=True)
class FinaliseResult:
    finalised: list[int]
    lost: list[int]  # this worker's lease had been rescued: the outcome was not written
    written: Mapping[int, Outcome] = field(default_factory=dict)  # as written, with what finish steps added


class Outbox:
    """One outbox table as seen by one worker (process start)."""

    def __init__(self, engine: Engine, table: Table, worker_id: str, *, lease_seconds: float,
                 retry_schedule_seconds: Sequence[float], rescue_status: str = QUEUED,
                 clock: Clock = utcnow, jitter: float = 0.2, rng: Callable[[], float] = random.random,
                 on_rescued: StepHook | None = None) -> None:
        if rescue_status not in (QUEUED, IN_DOUBT):
            raise ValueError("a rescued lease goes back to queued or to in_doubt")
        self.engine = engine
        self.table = table
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease_seconds)
        self.retries = RetryPolicy(tuple(retry_schedule_seconds), jitter)
        self.rescue_status = rescue_status
        self.clock = clock
        self.rng = rng
        self.on_rescued = on_rescued
        self._queries = driver_for(engine).outbox_queries(engine, table)

    @property
    def name(self) -> str:
        return self.table.name

    # -- claim -------------------------------------------------------------------------------

    def claim(self, limit: int) -> list[RowMapping]:
        """Take up to `limit` due rows, oldest first, under a lease owned by this worker."""
        started = time.perf_counter()
        now = self.clock()
        rows = self._queries.claim(limit, self.worker_id, now, now + self.lease)
        metrics.OUTBOX_CLAIM_DURATION.labels(self.name).observe(time.perf_counter() - started)
        metrics.OUTBOX_CLAIMED.labels(self.name).inc(len(rows))
        return rows

    def claim_batch(self, limit: int, stop: threading.Event, reserve_seconds: float = 0.0) -> "Batch":
        """Claim rows to work through one by one; see Batch for `reserve_seconds`."""
        return Batch(self, self.claim(limit), stop, reserve_seconds)

    # -- finalise ----------------------------------------------------------------------------

    def finalise(self, outcomes: Sequence[Outcome]) -> FinaliseResult:
        """Write many outcomes in one transaction, only for rows this worker still holds (the fence).

        An outcome's finish step runs first, in the same transaction, on its row locked and still held by this
        worker; what it adds is written with the outcome. A finish step that raises undoes only its own writes:
        its row goes `dead` with the error (a person must look), and the other outcomes are written."""
        by_id = {o.row_id: o for o in outcomes}  # the last word on a row wins
        if not by_id:
            return FinaliseResult([], [])
        now = self.clock()
        owned: set[int] = set()
        if not any(o.events or o.finish for o in by_id.values()) and len(_groups(by_id.values())) == 1:
            [(fields, group)] = _groups(by_id.values()).items()  # one statement, nothing else
            owned.update(self._queries.finalise_alone(group, fields, self.worker_id, now))
        else:
            with self.engine.begin() as conn:
                by_id.update(self._finish(conn, [o for o in by_id.values() if o.finish], now))
                for fields, group in _groups(by_id.values()).items():
                    owned.update(self._queries.finalise(conn, group, fields, self.worker_id, now))
                emit_events(conn, self.name, [e for o in by_id.values() if o.row_id in owned for e in o.events], now)
        for status, count in Counter(by_id[row_id].status for row_id in owned).items():
            metrics.OUTBOX_FINALISED.labels(self.name, status).inc(count)
            if status in metrics.FINAL:
                metrics.OUTBOX_OUTCOMES.labels(self.name, status).inc(count)
        lost = sorted(set(by_id) - owned)
        if lost:
            metrics.OUTBOX_FENCED.labels(self.name).inc(len(lost))
        return FinaliseResult(sorted(owned), lost, {row_id: by_id[row_id] for row_id in owned})

    def _finish(self, conn: Connection, finishing: Sequence[Outcome], now: datetime) -> dict[int, Outcome]:
        """Run the finish steps of the rows this worker still holds (locked until commit, so the rescuer
        cannot take them meanwhile); the outcomes with what the steps added. A lost row's step never runs."""
        if not finishing:
            return {}
        t = self.table
        held = set(conn.scalars(select(t.c.id).where(
            t.c.id.in_([o.row_id for o in finishing]), t.c.status == IN_FLIGHT_SQL,
            t.c.locked_by == self.worker_id).with_for_update()))
        finished: dict[int, Outcome] = {}
        for outcome in finishing:
            if outcome.row_id not in held:
                continue
            assert outcome.finish is not None
            try:
                with conn.begin_nested():
                    added = outcome.finish(conn, now)
            except Exception as exc:  # one row's failure must not hold up the others
                log.exception("%s row %s: finishing its %s outcome failed", self.name, outcome.row_id,
                              outcome.status)
                error = one_line(f"finishing as {outcome.status} failed: {type(exc).__name__}: {exc}", 500)
                finished[outcome.row_id] = Outcome(outcome.row_id, DEAD, "finish_failed", {"last_error": error})
                continue
            finished[outcome.row_id] = replace(outcome, fields={**outcome.fields, **added.fields},
                                               events=outcome.events + tuple(added.events), finish=None)
        return finished

    def retry(self, row: Mapping[str, Any], error: str, cause: str = "retry",
              delay_seconds: float | None = None) -> Outcome:
        """Queue the row again after the schedule's next delay with jitter (or the delay the other side
        asked for, e.g. Retry-After), or `dead` when the schedule has run out."""
        attempts = row["attempts"]
        if self.retries.exhausted(attempts):
            return Outcome(row["id"], DEAD, "retries_exhausted", {"last_error": error})
        if delay_seconds is None:
            delay_seconds = self.retries.delay_seconds(attempts, self.rng)
        return Outcome(row["id"], QUEUED, cause,
                       {"last_error": error, "next_attempt_at": self.clock() + timedelta(seconds=delay_seconds)})

    @staticmethod
    def defer(row: Mapping[str, Any], until: datetime, cause: str, error: str | None = None) -> Outcome:
        """Back to the queue until `until` without spending an attempt: the row was not at fault."""
        return Outcome(row["id"], QUEUED, cause,
                       {"next_attempt_at": until, "attempts": row["attempts"] - 1, "last_error": error})

    # -- hand back ---------------------------------------------------------------------------

    def release(self, row_ids: Sequence[int]) -> list[int]:
        """Hand unstarted rows back to the queue at once; the attempt they were claimed for is not counted."""
        if not row_ids:
            return []
        now = self.clock()
        t = self.table
        with self.engine.begin() as conn:
            released = list(conn.scalars(
                update(t)
                .where(t.c.id.in_(list(row_ids)), t.c.status == IN_FLIGHT_SQL, t.c.locked_by == self.worker_id)
                .values(status=QUEUED, locked_by=None, locked_until=None, attempts=t.c.attempts - 1,
                        updated_at=now)
                .returning(t.c.id)))
            record_history(conn, self.name, [(row_id, IN_FLIGHT, QUEUED, "released") for row_id in released],
                           self.worker_id, now)
        metrics.OUTBOX_RELEASED.labels(self.name).inc(len(released))
        return sorted(released)

    def rescue_expired(self, limit: int = 1000) -> list[int]:
        """Take back leases whose owner let them expire (crashed, hung, partitioned)."""
        now = self.clock()
        t = self.table
        with self.engine.begin() as conn:
            expired = conn.execute(
                select(t)
                .where(t.c.status == IN_FLIGHT_SQL, t.c.locked_until < now)
                .order_by(t.c.locked_until)
                .limit(limit)
                .with_for_update(skip_locked=True)).mappings().all()
            rescued: list[Transition] = []
            steps: list[tuple[RowMapping, Outcome]] = []
            for row in expired:
                error = f"lease of {row['locked_by']} expired"
                if self.rescue_status == IN_DOUBT:
                    # The request may have reached the provider: only reconciliation may decide.
                    outcome = Outcome(row["id"], IN_DOUBT, "lease_expired", {"last_error": error})
                else:
                    outcome = self.retry(row, error, cause="lease_expired")
                fields = {**outcome.fields, "status": outcome.status, "locked_by": None, "locked_until": None,
                          "updated_at": now}
                done = conn.execute(
                    update(t)
                    .where(t.c.id == row["id"], t.c.status == IN_FLIGHT_SQL, t.c.locked_by == row["locked_by"])
                    .values(**fields)).rowcount
                if done:
                    rescued.append((row["id"], IN_FLIGHT, outcome.status, outcome.cause))
                    steps.append((row, outcome))
            record_history(conn, self.name, rescued, self.worker_id, now)
        if self.on_rescued is not None:
            for row, outcome in steps:
                self.on_rescued(row, outcome)
        metrics.OUTBOX_RESCUED.labels(self.name).inc(len(rescued))
        return [row_id for row_id, *_ in rescued]


def _groups(outcomes: Iterable[Outcome]) -> dict[tuple[str, ...], list[Outcome]]:
    """Outcomes by the columns they set: each group is one statement."""
    groups: dict[tuple[str, ...], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(tuple(sorted(outcome.fields)), []).append(outcome)
    return groups


def requeue(engine: Engine, table: Table, row_ids: Sequence[int], actor: str, cause: str,
            now: datetime, *, statuses: Sequence[str] | None = None,
            reset: Mapping[str, Any] | None = None) -> list[int]:
    """A person's decision to try again now, with a fresh retry budget; rows in flight are left alone.

    `statuses`: only rows in one of these are taken (checked under the row lock, so a row that moved
    meanwhile is left alone). `reset`: more columns set with it, e.g. what a new attempt must not inherit."""
    t = table
    takeable = t.c.status != IN_FLIGHT_SQL
    if statuses is not None:
        takeable = takeable & t.c.status.in_([s for s in statuses if s != IN_FLIGHT])
    with engine.begin() as conn:
        before = dict(conn.execute(select(t.c.id, t.c.status).where(
            t.c.id.in_(list(row_ids)), takeable).with_for_update()).all())
        conn.execute(update(t).where(t.c.id.in_(list(before)), takeable).values(
            **dict(reset or {}), status=QUEUED, attempts=0, next_attempt_at=now, last_error=None, updated_at=now))
        record_history(conn, t.name, [(i, s, QUEUED, cause) for i, s in before.items()], actor, now)
    return sorted(before)


class Batch:
    """The rows of one claim. Iterate to start them one by one; record each outcome; on exit the
    outcomes are finalised together and rows never started are handed back at once.

    A row is not started on shutdown, nor when less than `reserve_seconds` of its lease is left: work
    that could outlive the lease might be rescued and done twice. A row started but never recorded
    (the handler raised) keeps its lease for the rescuer."""

    def __init__(self, outbox: Outbox, rows: list[RowMapping], stop: threading.Event,
                 reserve_seconds: float = 0.0) -> None:
        self.outbox = outbox
        self.rows = rows
        self.stop = stop
        self.reserve = timedelta(seconds=reserve_seconds)
        self._started: set[int] = set()
        self._halted = False
        self._outcomes: list[Outcome] = []
        self.result = FinaliseResult([], [])

    def __enter__(self) -> "Batch":
        return self

    def __iter__(self) -> Iterator[RowMapping]:
        for row in self.rows:
            if self._halted or self.stop.is_set() or self.outbox.clock() + self.reserve >= row["locked_until"]:
                return
            self._started.add(row["id"])
            yield row

    def halt(self) -> None:
        """Start no more rows (the provider paused the flow, say); the rest are handed back at the end."""
        self._halted = True

    def unstarted(self) -> list[int]:
        return [r["id"] for r in self.rows if r["id"] not in self._started]

    def record(self, outcome: Outcome) -> None:
        """Keep the outcome; all recorded outcomes are finalised together when the batch ends."""
        self._outcomes.append(outcome)

    def finish(self, outcome: Outcome) -> bool:
        """Finalise one row at once, for work whose repetition after a crash must stay within one row
        (a webhook POST). False when the lease had been lost and the outcome was not written."""
        return not self.outbox.finalise([outcome]).lost

    def close(self) -> None:
        """Finalise the recorded outcomes together and hand back the rows never started."""
        self.result = self.outbox.finalise(self._outcomes)
        self.outbox.release(self.unstarted())

    def written(self) -> list[Outcome]:
        """After close: the outcomes that were written (the last one recorded per row, with what its finish step
        added; none lost to the fence)."""
        return [self.result.written[row_id] for row_id in self.result.finalised]

    def __exit__(self, *exc_info: object) -> None:
        self.close()
