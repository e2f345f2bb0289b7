"""Rate limits shared through the database: never more than the limit in any window, across processes."""
from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine

from reconciler.coordination.rate_limits import RateLimit
from reconciler.engine.clock import utcnow
from reconciler.engine.db import make_engine


def test_grants_up_to_the_limit_in_any_sliding_window(engine, clock):
    limit = RateLimit(engine, "zoho", 3, 10.0, clock=clock)
    assert limit.try_acquire() == 0.0  # at 0
    clock.advance(4)
    assert limit.try_acquire() == 0.0  # at 4
    clock.advance(4)
    assert limit.try_acquire() == 0.0  # at 8
    clock.advance(1)  # now 9
    assert limit.try_acquire() == pytest.approx(1.0)  # the grant at 0 leaves at 10
    clock.advance(1)
    assert limit.try_acquire() == 0.0  # exactly one window after the first grant
    clock.advance(1)  # 11: grants at 4, 8, 10 fill the window; a fixed window or a refilled bucket would grant
    assert limit.try_acquire() == pytest.approx(3.0)
    clock.advance(3)
    assert limit.try_acquire() == 0.0


def test_keys_are_independent_and_every_instance_of_a_key_shares_it(engine, clock):
    assert RateLimit(engine, "a", 1, 60.0, clock=clock).try_acquire() == 0.0
    assert RateLimit(engine, "b", 1, 60.0, clock=clock).try_acquire() == 0.0
    assert RateLimit(engine, "a", 1, 60.0, clock=clock).try_acquire() == pytest.approx(60.0)


def test_lowering_the_limit_waits_until_enough_grants_have_left(engine, clock):
    for _ in range(4):
        assert RateLimit(engine, "mtn", 4, 10.0, clock=clock).try_acquire() == 0.0
        clock.advance(1)  # grants at 0, 1, 2, 3
    assert RateLimit(engine, "mtn", 2, 10.0, clock=clock).try_acquire() == pytest.approx(8.0)  # the one at 2 leaves at 12


def test_limit_zero_is_off_and_never_touches_the_database(tmp_path, clock):
    off = RateLimit(create_engine(f"sqlite:///{tmp_path}/missing/dir.db"), "mtn", 0, 1.0, clock=clock)
    assert all(off.acquire() for _ in range(1000))
    assert all(off.try_acquire() == 0.0 for _ in range(10))


class _ClockEvent(threading.Event):
    """A stop event whose wait moves the fake clock instead of sleeping; records the waits."""

    def __init__(self, clock) -> None:
        super().__init__()
        self.clock, self.waits = clock, []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.clock.advance(timeout)
        return self.is_set()


def test_acquire_waits_for_the_window_to_slide(engine, clock):
    limit, stop = RateLimit(engine, "zoho", 2, 60.0, clock=clock), _ClockEvent(clock)
    assert limit.acquire(stop) and limit.acquire(stop)
    assert stop.waits == []
    assert limit.acquire(stop)
    assert stop.waits == [pytest.approx(60.0)]


def test_acquire_gives_up_when_stopped_or_the_wait_is_too_long(engine, clock):
    limit, stop = RateLimit(engine, "zoho", 1, 60.0, clock=clock), _ClockEvent(clock)
    assert limit.acquire(stop)
    assert not limit.acquire(stop, max_wait_seconds=59.0)
    assert stop.waits == []  # refused at once: waiting could not help
    stop.set()
    assert not limit.acquire(stop)
    assert limit.acquire(_ClockEvent(clock), max_wait_seconds=60.0)


LIMIT, WINDOW_SECONDS, RUN_SECONDS, WORKERS = 5, 0.5, 2.0, 3
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _take_grants(url: str, start, results) -> None:
    """One replica: take grants on one key for RUN_SECONDS and report the time each grant was stamped with."""
    engine = make_engine(url)
    stamped: list[datetime] = []

    def clock() -> datetime:
        stamped.append(utcnow())
        return stamped[-1]

    limit, granted = RateLimit(engine, "mtn", LIMIT, WINDOW_SECONDS, clock=clock), []
    start.wait(60)  # all connected and imported: now they really compete
    end = time.monotonic() + RUN_SECONDS
    while (left := end - time.monotonic()) > 0 and limit.acquire(max_wait_seconds=left):
        granted.append(stamped[-1])  # the clock is read last under the row lock, when the grant is taken
    results.put(granted)
    engine.dispose()


def test_worker_processes_together_never_exceed_the_limit_in_any_window(engine, db_url):
    spawn = multiprocessing.get_context("spawn")
    results, start = spawn.Queue(), spawn.Barrier(WORKERS)
    workers = [spawn.Process(target=_take_grants, args=(db_url, start, results)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    try:
        per_worker = [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(10)
            assert w.exitcode == 0
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
    grants = sorted((t - _EPOCH) // timedelta(microseconds=1) for times in per_worker for t in times)
    window_us = round(WINDOW_SECONDS * 1_000_000)
    busiest = max(sum(1 for t in grants if g <= t < g + window_us) for g in grants)
    assert busiest <= LIMIT, f"{busiest} grants in one {WINDOW_SECONDS} s window"
    allowed = LIMIT * RUN_SECONDS / WINDOW_SECONDS
    assert len(grants) >= 0.6 * allowed, f"only {len(grants)} of {allowed:.0f} granted"
