"""The daemon loop: `schedule` triggers each interval job, every tick checks each time-of-day job's slot;
each run gets its own thread; stopping is graceful.

A job never overlaps itself (a trigger while it still runs is skipped and counted); an exception in
one job is logged and counted and the others go on; a database that went away makes that job back
off (1 s doubling to 60 s) instead of killing the process. A time-of-day slot is claimed in
schedule_runs before it runs (engine.schedule_slots), so it runs on one replica, once.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Callable

import schedule

from reconciler.engine import metrics
from reconciler.engine.db import is_database_unavailable
from reconciler.engine.job import Job, JobContext
from reconciler.engine.logs import RepeatedFailure
from reconciler.engine.schedule_slots import claim_slot, fail_slot, finish_slot, load_slot
from reconciler.engine.schedules import DailyAt, Every

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
SLOT_RETRY_SECONDS = 60.0  # a time-of-day run that raised is run again (by any replica) this much later
SECONDS_PER_DAY = 86400.0
_NEVER = datetime.max.replace(tzinfo=UTC)


def new_worker_id() -> str:
    """Unique per process start, so a restarted process never mistakes an old lease for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class JobRunner:
    """Runs one job in its own thread when triggered, unless it is still running or backing off."""

    def __init__(self, job: Job, ctx: JobContext, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.ctx = ctx
        self.monotonic = monotonic
        self.backoff_seconds = 0.0
        self.not_before = 0.0
        self._thread: threading.Thread | None = None
        self.failures = RepeatedFailure(log, f"job {job.name}", monotonic=monotonic)
        # Time-of-day jobs: (slot, no database look before this time); _NEVER once the slot is known finished.
        self._slot_quiet: tuple[datetime, datetime] | None = None
        self._start_metrics()

    def _start_metrics(self) -> None:
        """The job's series, there from the start: 0 runs, and the daemon's start as a first 'last success', so
        an alert on a job that never succeeds fires after its intervals, not never."""
        name = self.job.name
        for result in ("ok", "error", "skipped"):
            metrics.JOB_RUNS.labels(name, result)
        metrics.JOB_DURATION.labels(name)
        metrics.DATABASE_ERRORS.labels(name)
        when = self.job.when
        metrics.JOB_INTERVAL.labels(name).set(when.seconds if isinstance(when, Every) else SECONDS_PER_DAY)
        metrics.JOB_LAST_SUCCESS.labels(name).set(time.time())

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def trigger(self) -> None:
        if self.ctx.stop.is_set():
            return
        if self.job.daily_at is not None:
            self._trigger_slot(self.job.daily_at)
            return
        if self.running:
            metrics.JOB_RUNS.labels(self.job.name, "skipped").inc()
            return
        if self.monotonic() < self.not_before:
            return
        self._start(None)

    def _trigger_slot(self, daily_at: DailyAt) -> None:
        """Called every tick, so it stays in Python until a slot is due that this process may still run."""
        if self.running or self.monotonic() < self.not_before:
            return
        now = self.ctx.clock()
        slot = daily_at.due_slot(now)
        if slot is None or (self._slot_quiet is not None and self._slot_quiet[0] == slot
                            and now < self._slot_quiet[1]):
            return
        self._start(slot)

    def _start(self, slot: datetime | None) -> None:
        self._thread = threading.Thread(target=self.run_once, args=(slot,), name=f"job-{self.job.name}",
                                        daemon=True)
        self._thread.start()

    def run_once(self, slot: datetime | None = None) -> None:
        """One run: `job.run(ctx)`, or for a time-of-day job the run of `slot` if this replica can claim it."""
        started = time.perf_counter()
        try:
            if slot is None:
                self.job.run(self.ctx)
            elif not self._run_slot(slot):
                self.backoff_seconds = 0.0
                return  # another replica has it or had it: not a run of ours
        except Exception as exc:
            unavailable = is_database_unavailable(exc)
            if unavailable:
                self.backoff_seconds = min(max(self.backoff_seconds * 2, 1.0), MAX_BACKOFF_SECONDS)
                self.not_before = self.monotonic() + self.backoff_seconds
                metrics.DATABASE_ERRORS.labels(self.job.name).inc()
            self.failures.failed(exc, traceback=not unavailable,
                                 hint="; the database is unavailable, retrying with backoff" if unavailable else "")
            metrics.JOB_RUNS.labels(self.job.name, "error").inc()
        else:
            self.backoff_seconds = 0.0
            self.failures.succeeded()
            metrics.JOB_RUNS.labels(self.job.name, "ok").inc()
            metrics.JOB_LAST_SUCCESS.labels(self.job.name).set(time.time())
        metrics.JOB_DURATION.labels(self.job.name).observe(time.perf_counter() - started)

    def _run_slot(self, slot: datetime) -> bool:
        """Claim `slot`, run it, record how it went; False when the database gave the slot to no one here."""
        ctx, name = self.ctx, self.job.name
        if not claim_slot(ctx.engine, name, slot, ctx.worker_id, ctx.config.daemon.lease_seconds, ctx.clock()):
            held = load_slot(ctx.engine, name, slot)
            if held is not None:  # finished: never look again; held by another: look when its lease ends
                self._slot_quiet = (slot, _NEVER if held.finished_at is not None else held.lease_until)
            return False
        log.info("job %s: running the %s slot of %s", name, slot.isoformat(), self.job.when)
        try:
            self.job.run(ctx, slot)
        except Exception as exc:
            now = ctx.clock()
            self._slot_quiet = (slot, now + timedelta(seconds=SLOT_RETRY_SECONDS))
            fail_slot(ctx.engine, name, slot, ctx.worker_id, f"{type(exc).__name__}: {exc}", now,
                      SLOT_RETRY_SECONDS)
            raise
        if not finish_slot(ctx.engine, name, slot, ctx.worker_id, ctx.clock()):
            log.warning("job %s: the %s slot ran past its lease (daemon.lease_seconds) and was taken over",
                        name, slot.isoformat())
        self._slot_quiet = (slot, _NEVER)
        return True

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class Daemon:
    """Ticks the scheduler until `ctx.stop` is set, then gives running jobs the grace period to finish."""

    def __init__(self, ctx: JobContext, jobs: list[Job], tick_seconds: float = 0.2) -> None:
        self.ctx = ctx
        self.tick_seconds = tick_seconds
        self.scheduler = schedule.Scheduler()
        self.runners = [JobRunner(job, ctx) for job in jobs]
        self.slot_runners: list[JobRunner] = []  # time-of-day jobs: checked every tick
        for runner in self.runners:
            if isinstance(runner.job.when, Every):
                self.scheduler.every(runner.job.when.seconds).seconds.do(runner.trigger)
            else:
                self.slot_runners.append(runner)
        self.last_tick = time.monotonic()

    def is_alive(self) -> bool:
        """The main loop ticked recently (what /healthz reports)."""
        return time.monotonic() - self.last_tick < max(5.0, 10 * self.tick_seconds)

    def run(self) -> bool:
        """Run until stopped; True when every job finished within the grace period."""
        log.info("worker %s started with jobs: %s", self.ctx.worker_id,
                 ", ".join(r.job.name for r in self.runners))
        for runner in self.runners:
            runner.trigger()
        while not self.ctx.stop.is_set():
            self.tick()
            self.ctx.stop.wait(self.tick_seconds)
        return self.shutdown()

    def tick(self) -> None:
        """One pass of the main loop: the interval jobs that are due, and every time-of-day job's slot check."""
        self.scheduler.run_pending()
        for runner in self.slot_runners:
            runner.trigger()
        self.last_tick = time.monotonic()
        metrics.LOOP_LAST_TICK.set(time.time())

    def shutdown(self) -> bool:
        self.ctx.stop.set()
        deadline = time.monotonic() + self.ctx.config.daemon.shutdown_grace_seconds
        for runner in self.runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        unfinished = [r.job.name for r in self.runners if r.running]
        if unfinished:
            log.warning("grace period over; still running: %s (their leases expire and are rescued)",
                        ", ".join(unfinished))
        else:
            log.info("worker %s stopped cleanly", self.ctx.worker_id)
        return not unfinished
