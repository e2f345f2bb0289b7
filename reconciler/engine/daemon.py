"""The daemon loop: `schedule` triggers each job; each run gets its own thread; stopping is graceful.

A job never overlaps itself (a trigger while it still runs is skipped and counted); an exception in
one job is logged and counted and the others go on; a database that went away makes that job back
off (1 s doubling to 60 s) instead of killing the process.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Callable

import schedule
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from reconciler.engine import metrics
from reconciler.engine.job import Job, JobContext

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


def new_worker_id() -> str:
    """Unique per process start, so a restarted process never mistakes an old lease for its own."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def is_database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class JobRunner:
    """Runs one job in its own thread when triggered, unless it is still running or backing off."""

    def __init__(self, job: Job, ctx: JobContext, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.ctx = ctx
        self.monotonic = monotonic
        self.backoff_seconds = 0.0
        self.not_before = 0.0
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def trigger(self) -> None:
        if self.ctx.stop.is_set():
            return
        if self.running:
            metrics.JOB_RUNS.labels(self.job.name, "skipped").inc()
            return
        if self.monotonic() < self.not_before:
            return
        self._thread = threading.Thread(target=self.run_once, name=f"job-{self.job.name}", daemon=True)
        self._thread.start()

    def run_once(self) -> None:
        started = time.perf_counter()
        try:
            self.job.run(self.ctx)
        except Exception as exc:
            if is_database_unavailable(exc):
                self.backoff_seconds = min(max(self.backoff_seconds * 2, 1.0), MAX_BACKOFF_SECONDS)
                self.not_before = self.monotonic() + self.backoff_seconds
                metrics.DATABASE_ERRORS.labels(self.job.name).inc()
                log.warning("job %s: database unavailable (%s); retrying in %.0f s",
                            self.job.name, type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__,
                            self.backoff_seconds)
            else:
                log.exception("job %s failed", self.job.name)
            metrics.JOB_RUNS.labels(self.job.name, "error").inc()
        else:
            self.backoff_seconds = 0.0
            metrics.JOB_RUNS.labels(self.job.name, "ok").inc()
        finally:
            metrics.JOB_DURATION.labels(self.job.name).observe(time.perf_counter() - started)

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
        for runner in self.runners:
            self.scheduler.every(runner.job.interval_seconds).seconds.do(runner.trigger)
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
            self.scheduler.run_pending()
            self.last_tick = time.monotonic()
            metrics.LOOP_LAST_TICK.set(time.time())
            self.ctx.stop.wait(self.tick_seconds)
        return self.shutdown()

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
