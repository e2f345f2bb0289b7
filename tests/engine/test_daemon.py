"""The daemon: jobs in their own threads, no overlap, failures isolated, DB loss survived, graceful stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import requests
from sqlalchemy import select

from reconciler.app import assemble
from reconciler.config import Config, DaemonConfig
from reconciler.engine import metrics
from reconciler.engine.clock import utcnow
from reconciler.engine.daemon import Daemon, JobRunner, new_worker_id
from reconciler.engine.db import make_engine
from reconciler.engine.job import Job, JobContext
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import mtn_orders

from tests.factories import add_mtn_orders

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nothing"


def context(engine, clock=None, grace: float = 5.0) -> JobContext:
    config = Config(daemon=DaemonConfig(shutdown_grace_seconds=grace))
    worker = new_worker_id()
    clock = clock or utcnow
    return assemble(config, engine, worker_id=worker, clock=clock).context


def runs(job: str, result: str) -> float:
    return metrics.JOB_RUNS.labels(job, result)._value.get()


def test_worker_ids_are_unique_per_process_start():
    first, second = new_worker_id(), new_worker_id()
    assert first != second and str(os.getpid()) in first


def test_a_job_never_overlaps_itself(tmp_path):
    entered, release = threading.Event(), threading.Event()
    concurrent, active = [], [0]

    def slow(ctx):
        active[0] += 1
        concurrent.append(active[0])
        entered.set()
        release.wait(10)
        active[0] -= 1

    runner = JobRunner(Job("slow_overlap", 0.01, slow), context(make_engine(f"sqlite:///{tmp_path}/d.db")))
    skipped = runs("slow_overlap", "skipped")
    runner.trigger()
    assert entered.wait(10)
    runner.trigger()
    runner.trigger()
    assert runs("slow_overlap", "skipped") == skipped + 2
    release.set()
    runner.join(10)
    runner.trigger()
    runner.join(10)
    assert concurrent == [1, 1] and runs("slow_overlap", "ok") >= 2


def test_an_exception_in_one_job_is_counted_and_the_others_go_on(tmp_path):
    ctx = context(make_engine(f"sqlite:///{tmp_path}/d.db"))
    healthy_runs = []
    enough = threading.Event()

    def broken(_ctx):
        raise ValueError("bug in a job")

    def healthy(_ctx):
        healthy_runs.append(1)
        if len(healthy_runs) >= 3:
            enough.set()

    errors = runs("broken_job", "error")
    daemon = Daemon(ctx, [Job("broken_job", 0.02, broken), Job("healthy_job", 0.02, healthy)], tick_seconds=0.01)
    loop = threading.Thread(target=daemon.run)
    loop.start()
    assert enough.wait(10)
    ctx.stop.set()
    loop.join(10)
    assert runs("broken_job", "error") >= errors + 2  # it kept being scheduled after failing


def test_a_lost_database_makes_the_job_back_off_instead_of_dying():
    now = [1000.0]
    engine = make_engine(UNREACHABLE_PG)
    attempts = []

    def touches_database(ctx):
        attempts.append(now[0])
        ctx.outboxes["mtn_orders"].claim(10)

    runner = JobRunner(Job("db_job", 1, touches_database), context(engine), monotonic=lambda: now[0])
    lost = metrics.DATABASE_ERRORS.labels("db_job")._value.get()
    runner.trigger()
    runner.join(30)
    assert runner.backoff_seconds == 1.0
    runner.trigger()  # still inside the backoff window: not run
    runner.join(30)
    assert len(attempts) == 1
    now[0] += 1.5
    runner.trigger()
    runner.join(30)
    assert len(attempts) == 2 and runner.backoff_seconds == 2.0
    assert metrics.DATABASE_ERRORS.labels("db_job")._value.get() == lost + 2


def test_stop_finishes_the_row_in_flight_and_hands_back_unstarted_leases(engine, clock):
    ids = add_mtn_orders(engine, 5, due_at=clock.now)
    ctx = context(engine, clock)
    started, proceed = threading.Event(), threading.Event()

    def submit(job_ctx: JobContext) -> None:
        with job_ctx.outboxes["mtn_orders"].claim_batch(5, job_ctx.stop) as batch:
            for order in batch:
                started.set()
                proceed.wait(10)  # the provider call in progress when SIGTERM arrives
                batch.record(Outcome(order["id"], "submitted", "accepted", {"provider_order_id": "p1"}))

    daemon = Daemon(ctx, [Job("submit", 60, submit)], tick_seconds=0.01)
    finished = []
    loop = threading.Thread(target=lambda: finished.append(daemon.run()))
    loop.start()
    assert started.wait(10)
    ctx.stop.set()  # what the SIGTERM handler does
    proceed.set()
    loop.join(10)
    assert finished == [True]
    with engine.connect() as conn:
        rows = conn.execute(select(mtn_orders.c.id, mtn_orders.c.status, mtn_orders.c.attempts,
                                   mtn_orders.c.locked_by).order_by(mtn_orders.c.id)).all()
    assert rows == [(ids[0], "submitted", 1, None)] + [(i, "queued", 0, None) for i in ids[1:]]


def test_reconciler_run_serves_probes_and_exits_0_on_sigterm(db_url, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {db_url}\nadmin:\n  port: 0\nreceiver:\n  port: 0\n")
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler", "--config", str(config), "run"],
                              stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in daemon.stderr:  # wait for the listeners' own announcements, not a fixed time
            if "admin listener on" in line:  # up first, before the schema is migrated
                port = int(line.rsplit(":", 1)[1])
            if "public listener on" in line:  # migrated, the daemon is starting
                break
        assert port, "daemon never announced its admin listener"
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        assert "reconciler_loop_last_tick_timestamp_seconds" in requests.get(base + "/metrics", timeout=5).text
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        assert "stopped cleanly" in daemon.stderr.read()
    finally:
        if daemon.poll() is None:
            daemon.kill()
