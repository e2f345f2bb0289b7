"""The MTN commands: enqueue, retry, balance, reconcile (against the fake reseller, real HTTP), and the demo."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import func, select

from reconciler.cli.root import cli
from reconciler.cli.support import actor
from reconciler.config import load_config
from reconciler.coordination.pauses import Pauses
from reconciler.coordination.provider_state import load_state, record_balance
from reconciler.engine.clock import utcnow
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import (
    DEAD, IN_DOUBT, SUBMITTED, TERMINAL_STATUSES, mtn_orders, operator_actions, status_history,
)
from reconciler.providers.mtn.client import MtnClient
from reconciler.providers.mtn.fake import FakeMtn, MtnFaults
from reconciler.providers.mtn.orders import enqueue_mtn, find_mtn_order

from tests.factories import job_context

SHOP_COLUMNS = {"shop_order_id", "recipient_phone", "network", "size_gb", "notify_url"}


def invoke(db_url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env={"RECONCILER_DATABASE_URL": db_url, **env})


def settle_as(engine, clock, shop_order_id: str, status: str, **fields) -> int:
    """Put an enqueued order into `status` the way the daemon does: claimed, then finalised under the lease."""
    outbox = job_context(engine, load_config(env={}), clock).outboxes[mtn_orders.name]
    row_id = find_mtn_order(engine, shop_order_id)["id"]
    assert [r["id"] for r in outbox.claim(1)] == [row_id]
    assert outbox.finalise([Outcome(row_id, status, "test", fields)]).finalised == [row_id]
    return row_id


def test_enqueue_inserts_only_the_shop_columns(engine, db_url):
    result = invoke(db_url, "enqueue", "mtn", "--phone", "+233 24 123 4567", "--size", "5",
                    "--notify-url", "http://127.0.0.1:1/hook")
    assert result.exit_code == 0, result.output
    shop_order_id = result.stdout.strip()
    assert shop_order_id.startswith("cli-")
    row = find_mtn_order(engine, shop_order_id)
    assert {k: row[k] for k in SHOP_COLUMNS} == {
        "shop_order_id": shop_order_id, "recipient_phone": "+233 24 123 4567", "network": "MTN", "size_gb": 5,
        "notify_url": "http://127.0.0.1:1/hook"}
    assert (row["status"], row["attempts"], row["normalized_phone"], row["provider_order_id"]) == (
        "queued", 0, None, None)

    named = invoke(db_url, "enqueue", "mtn", "--phone", "0241234567", "--size", "1", "--shop-order-id", "A-1")
    assert named.exit_code == 0 and named.stdout.strip() == "A-1"
    duplicate = invoke(db_url, "enqueue", "mtn", "--phone", "0551234567", "--size", "2", "--shop-order-id", "A-1")
    assert duplicate.exit_code == 1 and "'A-1' exists already" in duplicate.output
    assert find_mtn_order(engine, "A-1")["size_gb"] == 1
    assert invoke(db_url, "enqueue", "mtn", "--phone", "0241234567", "--size", "0").exit_code == 2
    blank = invoke(db_url, "enqueue", "mtn", "--phone", "0241234567", "--size", "1", "--shop-order-id", " ")
    assert blank.exit_code == 2 and "--shop-order-id" in blank.output and "Traceback" not in blank.output


def test_retry_refuses_an_in_doubt_order_and_queues_a_dead_one_as_a_new_attempt(engine, db_url, clock):
    enqueue_mtn(engine, "doubt-1", "0241234567", 5)
    enqueue_mtn(engine, "dead-1", "0551234567", 2)
    clock.advance(60)
    settle_as(engine, clock, "doubt-1", IN_DOUBT, recipient_lock="0241234567:5", submitted_at=clock.now)
    dead_id = settle_as(engine, clock, "dead-1", DEAD, provider_order_id="1001", provider_status="failed",
                        reject_reason="x", recipient_lock="0551234567:2", last_error="retries exhausted")

    enqueue_mtn(engine, "queued-1", "0541234567", 1)
    queued = invoke(db_url, "retry", "queued-1")
    assert queued.exit_code == 1 and "is queued already" in queued.output
    with engine.connect() as conn:
        assert conn.scalar(select(status_history.c.id).where(status_history.c.cause == "retried")) is None

    refused = invoke(db_url, "retry", "doubt-1")
    assert refused.exit_code == 1 and "in doubt" in refused.output and "reconciler reconcile" in refused.output
    assert find_mtn_order(engine, "doubt-1")["status"] == IN_DOUBT
    assert invoke(db_url, "retry", "no-such-order").exit_code == 1

    retried = invoke(db_url, "retry", str(dead_id))  # by id; the shop_order_id works too
    assert retried.exit_code == 0, retried.output
    row = find_mtn_order(engine, "dead-1")
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 0, None)
    assert (row["provider_order_id"], row["provider_status"], row["reject_reason"], row["recipient_lock"]) == (
        None, None, None, None)
    with engine.connect() as conn:
        last = conn.execute(select(status_history).where(status_history.c.row_id == dead_id)
                            .order_by(status_history.c.id.desc())).mappings().first()
    assert (last["from_status"], last["to_status"], last["cause"]) == (DEAD, "queued", "retried")
    assert last["worker_id"].startswith("cli")


def test_balance_prints_and_records_the_resellers_balance(engine, db_url):
    with FakeMtn(balance=123.45, faults=MtnFaults(balance_as_string=True)) as fake:
        env = {"RECONCILER_MTN_BASE_URL": fake.url, "RECONCILER_MTN_API_KEY": fake.api_key}
        result = invoke(db_url, "balance", **env)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "MTN balance 123.45"
        assert load_state(engine, "mtn").balance == Decimal("123.45")

        wrong_key = invoke(db_url, "balance", **{**env, "RECONCILER_MTN_API_KEY": "nope"})
        assert wrong_key.exit_code == 1
        assert wrong_key.output.strip() == "Error: MTN balance unavailable: Invalid API key"
    assert invoke(db_url, "balance").exit_code == 2  # mtn.base_url not set


def test_a_balance_that_reads_ends_a_401_pause_at_once_and_a_low_one_keeps_a_balance_pause(engine, db_url, clock):
    pauses = Pauses(engine)
    with FakeMtn(balance=3.0) as fake:  # the cheapest bundle costs 5
        env = {"RECONCILER_MTN_BASE_URL": fake.url, "RECONCILER_MTN_API_KEY": fake.api_key}
        pauses.pause("mtn", "unauthorised", utcnow() + timedelta(minutes=5), utcnow(), "Invalid API key")
        result = invoke(db_url, "balance", **env)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == ["MTN balance 3.0 (below mtn.balance_alert_threshold 100)",
                                              "MTN flow resumed (it was paused: unauthorised)"]
        assert not pauses.get("mtn").paused

        pauses.pause("mtn", "insufficient_balance", utcnow() + timedelta(minutes=5), utcnow())
        assert "resumed" not in invoke(db_url, "balance", **env).output
        assert pauses.get("mtn").reason == "insufficient_balance"
        fake.balance = 500.0  # topped up
        assert invoke(db_url, "balance", **env).output.splitlines()[1] == (
            "MTN flow resumed (it was paused: insufficient_balance)")


def test_resume_ends_any_pause_and_records_who_did_it(engine, db_url):
    pauses, now = Pauses(engine), utcnow()
    pauses.pause("mtn", "rate_limited", now + timedelta(hours=1), now, "Too many requests")
    record_balance(engine, "mtn", Decimal("3"), now)
    result = invoke(db_url, "resume", "mtn")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("mtn resumed (it was paused: rate_limited, until ")
    assert not pauses.get("mtn").paused
    assert load_state(engine, "mtn").balance is None  # read afresh before the next order: a top-up counts
    with engine.connect() as conn:
        [action] = conn.execute(select(operator_actions)).mappings().all()
    assert (action["actor"], action["action"], action["target"]) == (actor(), "resume", "mtn")
    assert action["actor"].startswith("cli") and "rate_limited" in action["detail"]

    again = invoke(db_url, "resume", "mtn")
    assert (again.exit_code, again.output) == (0, "mtn was not paused\n")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(operator_actions)) == 1
    assert invoke(db_url, "resume", "paypal").exit_code == 2  # no such provider


def test_reconcile_settles_submitted_orders_whose_webhooks_were_dropped(engine, db_url, clock):
    with FakeMtn(faults=MtnFaults(webhook_drop_rate=1.0)) as fake:
        client = MtnClient(fake.url, fake.api_key, 5)
        for shop_order_id, phone in (("A-1", "0241234567"), ("B-1", "0551234567")):
            enqueue_mtn(engine, shop_order_id, phone, 5)
            clock.advance(60)
            settle_as(engine, clock, shop_order_id, SUBMITTED, normalized_phone=phone, submitted_at=clock.now,
                      recipient_lock=f"{phone}:5", provider_order_id=client.create_order(phone, "MTN", 5))
        fake.process_pending()
        assert fake.webhooks_dropped == 2
        env = {"RECONCILER_MTN_BASE_URL": fake.url, "RECONCILER_MTN_API_KEY": fake.api_key}

        result = invoke(db_url, "reconcile", "--order", "A-1", **env)
        assert result.exit_code == 0, result.output
        assert "checked 1, settled 1" in result.output
        settled = find_mtn_order(engine, "A-1")
        assert (settled["status"], settled["provider_status"], settled["recipient_lock"]) == (
            "completed", "success", None)
        assert find_mtn_order(engine, "B-1")["status"] == SUBMITTED  # not asked for

        again = invoke(db_url, "reconcile", "--order", "A-1", **env)
        assert again.exit_code == 0 and again.output.splitlines()[-1] == (
            "order A-1 is completed and the reseller's history shows no reversal of it; nothing changed")
        enqueue_mtn(engine, "Q-1", "0541234567", 1)
        queued = invoke(db_url, "reconcile", "--order", "Q-1", **env)
        assert queued.output.splitlines()[-1].startswith("order Q-1 is queued: only in-doubt, submitted and completed")

        assert "settled 1" in invoke(db_url, "reconcile", "--since", "1h", **env).output
        assert find_mtn_order(engine, "B-1")["status"] == "completed"
        assert invoke(db_url, "reconcile", "--order", "nope", **env).exit_code == 1
        assert invoke(db_url, "reconcile", "--order", "A-1", "--since", "1h", **env).exit_code == 2
        fake.configure(read_error_5xx_rate=1.0)
        unreadable = invoke(db_url, "reconcile", **env)
        assert unreadable.exit_code == 1 and "history could not be read" in unreadable.output


def test_demo_settles_every_order(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the demo keeps its database while it runs
    done = subprocess.run([sys.executable, "-m", "reconciler", "demo", "--orders", "20"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 of 20 orders settled" in done.stdout
    mtn = done.stdout.split("orders settled in")[1].split("T2Mobile licence orders settled")[0]
    table = dict(re.findall(r"^  (\w+) +(\d+)$", mtn, re.M))
    assert set(table) <= set(TERMINAL_STATUSES) and sum(map(int, table.values())) == 20, done.stdout
    assert int(table["completed"]) > 0 and int(table["rejected"]) > 0
    assert "customer notifications: 20 delivered, 0 dead; the shop verified 20 signatures" in done.stdout
    assert not list(tmp_path.iterdir())  # nothing left behind
