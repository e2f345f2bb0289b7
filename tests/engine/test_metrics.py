"""The engine's metrics as ops read them: outcomes per flow however they were written, the oldest unfinished order
per status, each job's last success, and series that exist before the first event (so rate() has data)."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import update

from jobs import refresh_metrics
from reconciler.config import Config
from reconciler.coordination.pauses import Pauses
from reconciler.engine import metrics
from reconciler.engine.daemon import JobRunner
from reconciler.engine.job import Job
from reconciler.engine.outbox import Outbox, Outcome
from reconciler.engine.schema import mtn_orders
from reconciler.engine.transitions import move

from tests.factories import add_mtn_orders, job_context


def outcomes(table: str, status: str) -> float:
    return REGISTRY.get_sample_value("reconciler_outbox_outcomes_total", {"table": table, "status": status})


def test_every_final_outcome_is_counted_per_flow_whether_finalised_or_settled(engine, clock):
    failed_before, completed_before = outcomes("mtn_orders", "failed"), outcomes("mtn_orders", "completed")
    first, second, third = add_mtn_orders(engine, 3, due_at=clock.now)
    box = Outbox(engine, mtn_orders, "w1", lease_seconds=60, retry_schedule_seconds=[10], clock=clock)
    box.claim(3)
    box.finalise([Outcome(first, "failed", "rejected_by_provider"), Outcome(second, "submitted", "submitted"),
                  Outcome(third, "submitted", "submitted")])
    with engine.begin() as conn:  # a webhook settles one
        assert move(conn, mtn_orders, Outcome(second, "completed", "webhook"), "submitted", "w1", clock.now)
    with pytest.raises(RuntimeError), engine.begin() as conn:  # a settlement whose transaction is rolled back
        assert move(conn, mtn_orders, Outcome(third, "completed", "webhook"), "submitted", "w1", clock.now)
        raise RuntimeError("the caller failed after the move")

    assert outcomes("mtn_orders", "failed") - failed_before == 1
    assert outcomes("mtn_orders", "completed") - completed_before == 1  # the rolled-back one is not counted


def test_the_oldest_unfinished_order_per_status_is_exported(engine, clock):
    old, new = add_mtn_orders(engine, 2, due_at=clock.now)
    with engine.begin() as conn:
        conn.execute(update(mtn_orders).where(mtn_orders.c.id == old).values(
            status="in_doubt", created_at=clock.now - timedelta(minutes=45)))
        conn.execute(update(mtn_orders).where(mtn_orders.c.id == new).values(created_at=clock.now))
    clock.advance(10)
    refresh_metrics.run(job_context(engine, Config(), clock))

    def age(status: str) -> float:
        return REGISTRY.get_sample_value("reconciler_outbox_oldest_age_seconds",
                                         {"table": "mtn_orders", "status": status})
    assert age("in_doubt") == pytest.approx(45 * 60 + 10)
    assert age("queued") == pytest.approx(10)
    assert age("submitted") == 0


def test_every_replica_shows_a_providers_pause_from_the_database_until_it_ends(engine, clock):
    pauses = Pauses(engine)
    pauses.pause("zoho", "daily_cap", clock.now + timedelta(hours=3), clock.now, "1000 calls today")
    pauses.pause("webhook:https://shop.example/notify", "breaker", clock.now + timedelta(minutes=1), clock.now)
    ctx = job_context(engine, Config(), clock)

    def paused(provider: str, reason: str) -> float | None:
        return REGISTRY.get_sample_value("reconciler_provider_paused", {"provider": provider, "reason": reason})
    refresh_metrics.run(ctx)
    assert paused("zoho", "daily_cap") == 1
    assert paused("webhook:https://shop.example/notify", "breaker") is None  # endpoints have their own gauge
    pauses.resume("zoho", clock.now)  # e.g. `reconciler resume zoho`, on another machine
    refresh_metrics.run(ctx)
    assert paused("zoho", "daily_cap") == 0


def test_a_jobs_last_success_moves_on_success_only_and_its_interval_is_exported(engine, clock):
    fail = [False]

    def work(ctx):
        if fail[0]:
            raise ValueError("broken")

    runner = JobRunner(Job("metrics_probe", 7.5, work), job_context(engine, Config(), clock))
    labels = {"job": "metrics_probe"}
    assert REGISTRY.get_sample_value("reconciler_job_interval_seconds", labels) == 7.5
    started = REGISTRY.get_sample_value("reconciler_job_last_success_timestamp_seconds", labels)
    assert started == pytest.approx(time.time(), abs=60)  # the daemon's start until a first success

    runner.run_once()
    succeeded = REGISTRY.get_sample_value("reconciler_job_last_success_timestamp_seconds", labels)
    assert succeeded >= started
    fail[0] = True
    metrics.JOB_LAST_SUCCESS.labels("metrics_probe").set(succeeded - 100)  # so a wrongful update would show
    runner.run_once()
    assert REGISTRY.get_sample_value("reconciler_job_last_success_timestamp_seconds", labels) == succeeded - 100


def test_series_exist_at_zero_before_anything_happens_and_the_build_is_named():
    text = generate_latest().decode()
    for series in ('reconciler_outbox_outcomes_total{status="dead",table="webhook_deliveries"}',
                   'reconciler_outbox_leases_rescued_total{table="zoho_orders"}',
                   'reconciler_outbox_oldest_age_seconds{status="in_doubt",table="mtn_orders"}',
                   'reconciler_webhook_deliveries_total{outcome="dead"}',
                   'reconciler_inbound_webhooks_total{provider="mtn",result="bad_signature"}',
                   'reconciler_provider_paused{provider="mtn",reason="unauthorised"}'):
        assert series in text
    assert 'reconciler_build_info{python="' in text and 'version="0.1.0"' in text


# Labels known only at run time: a job's name (its series are made when the daemon is built), a provider call's
# operation and error class (made with the provider's client), a balance (absent until the first reading).
LABELLED_AT_RUN_TIME = {
    "reconciler_job_runs", "reconciler_job_duration_seconds", "reconciler_job_last_success_timestamp_seconds",
    "reconciler_job_interval_seconds", "reconciler_database_errors", "reconciler_provider_request_duration_seconds",
    "reconciler_provider_errors", "reconciler_provider_balance", "reconciler_provider_balance_alert_threshold"}


def test_every_other_labelled_metric_has_its_series_from_the_start():
    """In a new process (this one's registry holds other tests' series): a series that first appears with its
    first event makes rate() miss that event, and a panel or alert shows nothing until then."""
    listing = ("from reconciler import app\n"
               "for m in app.metrics():\n"
               "    if m._labelnames and not m.collect()[0].samples:\n"
               "        print(m._name)\n")
    done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, timeout=60, check=True)
    assert set(done.stdout.split()) - LABELLED_AT_RUN_TIME == set()
