"""What ops see: the admin listener's probes and metrics, and `reconciler status`."""
from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from jobs import refresh_metrics
from reconciler.app import assemble
from reconciler.cli.root import cli
from reconciler.config import Config
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.provider_state import record_balance
from reconciler.engine.clock import utcnow
from reconciler.engine.db import make_engine
from reconciler.engine.outbox import Outbox, Outcome
from reconciler.engine.schema import mtn_orders
from reconciler.http.admin import admin_listener, database_not_ready

from tests.factories import add_mtn_orders


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def seed(engine, clock) -> None:
    """Three queued (due 90 s ago), one completed, one dead."""
    add_mtn_orders(engine, 5, due_at=clock.now - timedelta(seconds=90))
    box = Outbox(engine, mtn_orders, "seed", lease_seconds=60, retry_schedule_seconds=[10], clock=clock)
    first, second = box.claim(2)
    box.finalise([Outcome(first["id"], "completed", "delivered"), Outcome(second["id"], "dead", "gave_up")])


def test_probes_report_loop_liveness_and_database_reachability(engine):
    alive = [True]
    server = admin_listener("127.0.0.1", 0, alive=lambda: alive[0], ready=lambda: database_not_ready(engine)).start()
    down = make_engine("postgresql://postgres@127.0.0.1:1/nothing")
    unready = admin_listener("127.0.0.1", 0, alive=lambda: True, ready=lambda: database_not_ready(down)).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
        alive[0] = False
        assert requests.get(base + "/healthz", timeout=5).status_code == 503
        why = requests.get(f"http://127.0.0.1:{unready.port}/readyz", timeout=10)
        assert why.status_code == 503 and why.text.startswith("not ready: database unreachable: connection failed")
        assert requests.get(base + "/nope", timeout=5).status_code == 404
    finally:
        server.stop()
        unready.stop()


def test_metrics_export_outbox_state_and_activity(engine, clock):
    server = admin_listener("127.0.0.1", 0, alive=lambda: True, ready=lambda: None).start()
    try:
        before = scrape(server.port)  # counters are process-wide: compare deltas
        seed(engine, clock)
        [waiting] = add_mtn_orders(engine, 1, prefix="waiting")
        with engine.begin() as conn:  # queued 10 minutes ago, deferred for an hour
            conn.execute(update(mtn_orders).where(mtn_orders.c.id == waiting).values(
                created_at=clock.now - timedelta(seconds=600), next_attempt_at=clock.now + timedelta(hours=1)))
        config = Config()
        ctx = assemble(config, engine, worker_id="w", clock=clock).context
        refresh_metrics.run(ctx)
        after = scrape(server.port)
    finally:
        server.stop()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert after[("reconciler_outbox_rows", (("status", "queued"), ("table", "mtn_orders")))] == 4
    assert after[("reconciler_outbox_rows", (("status", "dead"), ("table", "mtn_orders")))] == 1
    assert after[("reconciler_outbox_rows", (("status", "in_flight"), ("table", "zoho_orders")))] == 0
    assert after[("reconciler_outbox_oldest_queued_age_seconds", (("table", "mtn_orders"),))] == 90
    assert after[("reconciler_outbox_oldest_waiting_age_seconds", (("table", "mtn_orders"),))] == 600
    assert delta("reconciler_outbox_claimed_total", table="mtn_orders") == 2
    assert delta("reconciler_outbox_finalised_total", table="mtn_orders", outcome="completed") == 1
    assert delta("reconciler_outbox_finalised_total", table="mtn_orders", outcome="dead") == 1
    assert delta("reconciler_outbox_claim_duration_seconds_count", table="mtn_orders") == 1


def test_status_prints_counts_oldest_age_and_dead_as_text_and_json(engine, db_url, clock):
    seed(engine, clock)
    [waiting] = add_mtn_orders(engine, 1, prefix="waiting")
    with engine.begin() as conn:  # queued ten minutes ago and deferred for an hour: not due, yet not 0 s old
        conn.execute(update(mtn_orders).where(mtn_orders.c.id == waiting).values(
            created_at=utcnow() - timedelta(seconds=600), next_attempt_at=utcnow() + timedelta(hours=1)))
    runner = CliRunner()
    env = {"RECONCILER_DATABASE_URL": db_url, "RECONCILER_CONFIG": ""}
    report = json.loads(runner.invoke(cli, ["status", "--json"], env=env).output)
    mtn = report["mtn_orders"]
    assert mtn["counts"] == {"queued": 4, "in_flight": 0, "in_doubt": 0, "submitted": 0, "completed": 1,
                             "failed": 0, "rejected": 0, "dead": 1}
    assert mtn["dead"] == 1 and mtn["oldest_queued_age_seconds"] >= 90
    assert 600 <= mtn["oldest_waiting_age_seconds"] < 700
    assert set(report) == {"mtn_orders", "zoho_orders", "webhook_deliveries", "providers"}
    assert report["providers"] == {}
    text = runner.invoke(cli, ["status"], env=env)
    assert text.exit_code == 0
    assert "mtn_orders" in text.output and "dead 1" in text.output
    assert re.search(r"mtn_orders  \(oldest queued \d+s, oldest waiting 6\d\ds, dead 1\)", text.output)


def test_status_says_why_a_providers_orders_wait(engine, db_url, clock):
    record_balance(engine, "mtn", Decimal("12.50"), clock())
    Pauses(engine).pause("mtn", "insufficient_balance", clock() + timedelta(minutes=5), clock())
    runner = CliRunner()
    env = {"RECONCILER_DATABASE_URL": db_url, "RECONCILER_CONFIG": ""}
    mtn = json.loads(runner.invoke(cli, ["status", "--json"], env=env).output)["providers"]["mtn"]
    assert (mtn["paused"], mtn["paused_reason"], Decimal(mtn["balance"])) == (True, "insufficient_balance",
                                                                               Decimal("12.5"))
    assert "mtn: PAUSED (insufficient_balance) until" in runner.invoke(cli, ["status"], env=env).output
