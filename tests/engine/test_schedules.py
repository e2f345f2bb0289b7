"""Time-of-day jobs: slot arithmetic in a time zone (DST too), and daemons ticking on several replicas run
each slot once, late within the lateness, retried after a failure, taken over from a dead replica."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from sqlalchemy import event

from reconciler.config import Config
from reconciler.engine.clock import utcnow
from reconciler.engine.daemon import SLOT_RETRY_SECONDS, Daemon, new_worker_id
from reconciler.engine.db import make_engine
from reconciler.engine.job import Job, JobContext
from reconciler.engine.schedule_slots import claim_slot, load_slot
from reconciler.engine.schedules import DailyAt, Every

from tests.conftest import FakeClock

UTC = timezone.utc
HOUR = 3600.0


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- when a slot is -------------------------------------------------------------------------------------

def test_a_daily_slot_is_the_local_wall_time_in_utc():
    lagos = DailyAt.parse("02:00", "Africa/Lagos", HOUR)  # UTC+1 all year
    assert lagos.latest_slot(utc(2026, 5, 10, 0, 59, 59)) == utc(2026, 5, 9, 1, 0)
    assert lagos.latest_slot(utc(2026, 5, 10, 1, 0)) == utc(2026, 5, 10, 1, 0)
    assert lagos.latest_slot(utc(2026, 5, 10, 23, 30)) == utc(2026, 5, 10, 1, 0)
    kolkata = DailyAt(2, 0, "Asia/Kolkata", HOUR)  # UTC+5:30: the slot is on the previous UTC day
    assert kolkata.latest_slot(utc(2026, 5, 10, 12, 0)) == utc(2026, 5, 9, 20, 30)
    assert kolkata.latest_slot(utc(2026, 5, 9, 20, 29)) == utc(2026, 5, 8, 20, 30)


def test_daylight_saving_changes_keep_one_slot_a_day():
    berlin = DailyAt(2, 30, "Europe/Berlin", HOUR)
    # 29 March 2026, 02:00 CET -> 03:00 CEST: 02:30 does not exist, the slot is at 03:30 CEST (01:30 UTC).
    assert berlin.latest_slot(utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 28, 1, 30)  # 02:30 CET
    assert berlin.latest_slot(utc(2026, 3, 29, 1, 29)) == utc(2026, 3, 28, 1, 30)
    assert berlin.latest_slot(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 29, 1, 30)
    assert berlin.latest_slot(utc(2026, 3, 30, 12, 0)) == utc(2026, 3, 30, 0, 30)  # 02:30 CEST
    assert DailyAt(3, 0, "Europe/Berlin", HOUR).latest_slot(utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 29, 1, 0)
    # 25 October 2026, 03:00 CEST -> 02:00 CET: 02:30 happens twice, the slot is the first (00:30 UTC) only.
    assert berlin.latest_slot(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)  # the second 02:45
    assert berlin.latest_slot(utc(2026, 10, 26, 1, 29)) == utc(2026, 10, 25, 0, 30)


def test_a_slot_is_due_only_within_its_lateness():
    slot = utc(2026, 5, 10, 1, 0)
    assert DailyAt(2, 0, "Africa/Lagos", 3 * HOUR).due_slot(slot + timedelta(hours=2)) == slot
    assert DailyAt(2, 0, "Africa/Lagos", 2 * HOUR).due_slot(slot + timedelta(hours=2)) == slot
    assert DailyAt(2, 0, "Africa/Lagos", 1 * HOUR).due_slot(slot + timedelta(hours=2)) is None


@pytest.mark.parametrize("hh_mm, message", [
    ("25:00", "time of day 25:00 is out of range (00:00 to 23:59)"),
    ("02:60", "time of day 02:60 is out of range (00:00 to 23:59)"),
    ("2am", "time of day '2am' is not HH:MM (e.g. 02:00)"),
    ("2:00", "time of day '2:00' is not HH:MM (e.g. 02:00)"),
])
def test_a_bad_time_of_day_is_refused_with_a_clear_message(hh_mm, message):
    with pytest.raises(ValueError) as refused:
        DailyAt.parse(hh_mm, "Africa/Lagos", HOUR)
    assert str(refused.value) == message


def test_a_bad_time_zone_lateness_or_job_is_refused():
    with pytest.raises(ValueError, match="unknown time zone 'Africa/Lagoss': use an IANA name"):
        DailyAt.parse("02:00", "Africa/Lagoss", HOUR)
    with pytest.raises(ValueError, match="max_lateness_seconds must be >= 0"):
        DailyAt(2, 0, "Africa/Lagos", -1)
    with pytest.raises(ValueError, match="an interval must be > 0 seconds"):
        Every(0)
    with pytest.raises(ValueError, match="job reminders: give either interval_seconds or daily_at"):
        Job("reminders", 60, print, daily_at=DailyAt(2, 0, "Africa/Lagos", HOUR))
    with pytest.raises(ValueError, match="job reminders: give either interval_seconds or daily_at"):
        Job("reminders", None, print)


# --- daemons on several replicas ------------------------------------------------------------------------

LAGOS_02 = utc(2026, 5, 10, 1, 0)  # 02:00 in Africa/Lagos


class Replicas:
    """Daemons sharing one database and one clock, each with its own engine and worker id, all running the
    time-of-day job `reminders`; `runs` lists (worker, slot) per run of it."""

    def __init__(self, db_url: str, clock: FakeClock, max_lateness_seconds: float = 3 * HOUR,
                 fail_first: int = 0) -> None:
        self.db_url, self.clock = db_url, clock
        self.job = Job("reminders", None, self._run, daily_at=DailyAt(2, 0, "Africa/Lagos", max_lateness_seconds))
        self.runs: list[tuple[str, datetime]] = []
        self.failures_left = fail_first
        self.engines = []

    def _run(self, ctx: JobContext, slot_at: datetime) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("partner webhook down")
        self.runs.append((ctx.worker_id, slot_at))

    def start(self, count: int = 1) -> list[Daemon]:
        """`count` replicas (re)started now: new processes, new worker ids."""
        daemons = []
        for _ in range(count):
            self.engines.append(make_engine(self.db_url))
            ctx = JobContext(config=Config(), engine=self.engines[-1], worker_id=new_worker_id(), outboxes={},
                             stop=threading.Event(), clock=self.clock)
            daemons.append(Daemon(ctx, [self.job]))
        return daemons

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()


@pytest.fixture
def replicas(db_url, engine):
    made: list[Replicas] = []

    def make(start: datetime, **options) -> Replicas:
        made.append(Replicas(db_url, FakeClock(start), **options))
        return made[-1]

    yield make
    for r in made:
        r.dispose()


def tick(*daemons: Daemon) -> None:
    """Every daemon ticks at the same moment, as separate processes would; then their runs finish."""
    barrier = threading.Barrier(len(daemons))

    def one(daemon: Daemon) -> None:
        barrier.wait(10)
        daemon.tick()

    threads = [threading.Thread(target=one, args=(d,)) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for d in daemons:
        for runner in d.runners:
            runner.join(10)
            assert not runner.running


def test_a_slot_runs_once_across_replicas_and_restarts(replicas):
    r = replicas(LAGOS_02 - timedelta(minutes=1))
    daemons = r.start(3)
    tick(*daemons)
    assert r.runs == []
    r.clock.advance(60)
    tick(*daemons)
    tick(*daemons)
    assert [slot for _, slot in r.runs] == [LAGOS_02]
    assert r.runs[0][0] in {d.ctx.worker_id for d in daemons}
    tick(*r.start(2), *daemons)  # restarts at the same time
    r.clock.advance(30 * 60)  # and later, when the first run's lease is long over, within the lateness
    tick(*r.start(2))
    assert [slot for _, slot in r.runs] == [LAGOS_02]
    r.clock.advance(86_400)
    tick(*daemons)
    tick(*daemons)
    assert [slot for _, slot in r.runs] == [LAGOS_02, LAGOS_02 + timedelta(days=1)]


def test_with_the_real_clock_frozen_a_slot_runs_once_across_replicas(db_url, engine):
    # The daemon's own clock (utcnow), as `reconciler run` has it, moved by freezegun instead of a FakeClock.
    r = Replicas(db_url, utcnow)
    try:
        with freeze_time(LAGOS_02 - timedelta(minutes=1)) as frozen:
            daemons = r.start(3)
            tick(*daemons)
            assert r.runs == []
            frozen.tick(timedelta(minutes=2))
            tick(*daemons)
            tick(*r.start(2), *daemons)
            assert [slot for _, slot in r.runs] == [LAGOS_02]
    finally:
        r.dispose()


@pytest.mark.parametrize("lateness_hours, runs", [(3, 1), (1, 0)])
def test_a_slot_missed_while_every_replica_was_down_runs_once_if_not_too_late(replicas, lateness_hours, runs):
    r = replicas(LAGOS_02 + timedelta(hours=2), max_lateness_seconds=lateness_hours * HOUR)
    daemons = r.start(3)  # back at 04:00 after the 02:00 slot was missed
    tick(*daemons)
    tick(*daemons)
    assert [slot for _, slot in r.runs] == [LAGOS_02] * runs


def test_a_run_that_raised_is_retried_on_a_later_tick_and_then_finishes_once(replicas, engine):
    r = replicas(LAGOS_02, fail_first=1)
    daemons = r.start(3)
    tick(*daemons)
    failed = load_slot(engine, "reminders", LAGOS_02)
    assert (r.runs, failed.finished_at, failed.last_error) == ([], None, "ConnectionError: partner webhook down")
    r.clock.advance(SLOT_RETRY_SECONDS - 1)
    tick(*daemons)
    assert r.runs == [] and load_slot(engine, "reminders", LAGOS_02).attempts == 1
    r.clock.advance(1)
    tick(*daemons)
    tick(*daemons)
    done = load_slot(engine, "reminders", LAGOS_02)
    assert len(r.runs) == 1 and (done.attempts, done.finished_at) == (2, LAGOS_02 + timedelta(seconds=60))


def test_a_replica_that_died_holding_the_slot_is_taken_over_once(replicas, engine):
    lease = Config().daemon.lease_seconds
    assert claim_slot(engine, "reminders", LAGOS_02, "died-mid-run", lease, LAGOS_02)
    r = replicas(LAGOS_02 + timedelta(seconds=1))
    daemons = r.start(3)
    tick(*daemons)
    assert r.runs == []
    r.clock.advance(lease)
    tick(*daemons)
    tick(*daemons)
    taken = load_slot(engine, "reminders", LAGOS_02)
    assert [slot for _, slot in r.runs] == [LAGOS_02]
    assert (taken.claimed_by, taken.attempts, taken.finished_at) == (r.runs[0][0], 2, r.clock.now)


def test_ticks_touch_the_database_only_for_a_slot_not_known_finished(replicas):
    r = replicas(LAGOS_02 - timedelta(minutes=1))
    [daemon] = r.start()
    statements = []
    event.listen(r.engines[0], "before_cursor_execute", lambda *args: statements.append(1))
    for _ in range(20):
        tick(daemon)
    assert statements == []  # nothing due
    r.clock.advance(60)
    tick(daemon)
    assert len(r.runs) == 1 and statements  # claimed and finished it
    statements.clear()
    for _ in range(20):
        r.clock.advance(60)
        tick(daemon)
    assert statements == []  # this process knows the slot is finished
    [restarted] = r.start()
    event.listen(r.engines[-1], "before_cursor_execute", lambda *args: statements.append(1))
    tick(restarted)
    assert statements  # a new process asks once
    statements.clear()
    for _ in range(20):
        tick(restarted)
    assert statements == [] and len(r.runs) == 1


def test_a_replica_waits_out_another_replicas_lease_without_asking_every_tick(replicas, engine):
    lease = Config().daemon.lease_seconds
    assert claim_slot(engine, "reminders", LAGOS_02, "busy-elsewhere", lease, LAGOS_02)
    r = replicas(LAGOS_02)
    [daemon] = r.start()
    statements = []
    event.listen(r.engines[0], "before_cursor_execute", lambda *args: statements.append(1))
    tick(daemon)
    assert statements
    statements.clear()
    for _ in range(20):
        r.clock.advance((lease - 1) / 20)
        tick(daemon)
    assert statements == [] and r.runs == []
    r.clock.advance(1)
    tick(daemon)
    assert [slot for _, slot in r.runs] == [LAGOS_02]  # the other replica never finished: taken over
