"""The real daemon (`reconciler run`, a subprocess) against the fake Zoho that creates sales orders and then
never answers: killed with SIGKILL mid-batch and restarted, it ends with every order final, no sales order
created twice for one order, and every sales order in Zoho one of ours."""
from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, insert, select

from reconciler.engine.schema import TERMINAL_STATUSES, zoho_orders
from reconciler.providers.zoho.fake import ZohoFaults

from tests.providers.mtn.test_daemon import free_port, wait_until_settled
from tests.providers.zoho.flow import PARTNER_SECRET
from tests.waiting import wait_for
from tests.webhook_receiver import Receiver


def run_and_kill(db_url, engine, tmp_path, make_fake_zoho, orders: int, timeouts: int) -> None:
    fake = make_fake_zoho(faults=ZohoFaults(timeout_after_create=timeouts, timeout_hold_seconds=1.5,
                                            requests_per_minute=10_000, requests_per_day=100_000))
    partner = Receiver()
    config = tmp_path / "config.yaml"
    config.write_text(f"""database:
  url: {db_url}
zoho:
  accounts_url: {fake.accounts_url}
  api_url: {fake.api_url}
  organization_id: "{fake.organization_id}"
  client_id: {fake.client_id}
  client_secret: ${{ZOHO_CLIENT_SECRET}}
  refresh_token: ${{ZOHO_REFRESH_TOKEN}}
  connect_timeout_seconds: 0.5
  request_timeout_seconds: 0.5
  retry_schedule_seconds: [0.2, 0.2, 0.2]
  poll_interval_seconds: 0.05
  in_doubt_grace_seconds: 0.5
  requests_per_minute: 10000
  rate_window_seconds: 1
  requests_per_day: 100000
mtn:  # off (no base_url); its timeouts still bound the lease
  connect_timeout_seconds: 0.5
  request_timeout_seconds: 0.5
partner:
  webhook_url: {partner.url('/t2mobile/events')}
  webhook_secret: ${{PARTNER_WEBHOOK_SECRET}}
admin:
  port: 0
receiver:
  host: 127.0.0.1
  port: {free_port()}
daemon:
  batch_size: 5
  lease_seconds: 2
  rescue_interval_seconds: 0.2
webhooks:
  connect_timeout_seconds: 0.5
  timeout_seconds: 1
""")
    env = {"PATH": "/usr/bin:/bin", "ZOHO_CLIENT_SECRET": fake.client_secret,
           "ZOHO_REFRESH_TOKEN": fake.refresh_token, "PARTNER_WEBHOOK_SECRET": PARTNER_SECRET}
    with engine.begin() as conn:  # a few customers order twice: renewals
        conn.execute(insert(zoho_orders), [
            {"order_id": f"kill-{i}", "customer_id": f"CUST-{i % (orders - 3)}", "customer_name": "Ada Obi",
             "customer_email": f"ada{i % (orders - 3)}@example.ng", "product_id": "ZOHO_CRM_STD",
             "tenure": "1_MONTH"} for i in range(orders)])

    def daemon() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "reconciler", "--config", str(config), "run"], env=env,
                                stderr=subprocess.DEVNULL)

    first = daemon()
    try:
        wait_for("the first daemon to get going", lambda: len(fake.salesorders) >= orders // 3, 30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with engine.connect() as conn:
            caught = conn.scalar(select(func.count()).where(zoho_orders.c.status.in_(["in_flight", "in_doubt"])))
        assert caught > 0, "the kill caught no work in progress: this run proves nothing"
        second = daemon()
        try:
            statuses = wait_until_settled(engine, deadline_seconds=60, table=zoho_orders)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        partner.close()
        if first.poll() is None:
            first.kill()

    assert set(statuses.values()) <= set(TERMINAL_STATUSES), Counter(statuses.values())
    created = Counter(order["reference_number"] for order in fake.salesorders)
    assert max(created.values()) == 1, "a sales order was created twice for one order"
    with engine.connect() as conn:
        ours = dict(conn.execute(select(zoho_orders.c.order_id, zoho_orders.c.zoho_salesorder_id)).all())
    assert {o["reference_number"]: o["salesorder_id"] for o in fake.salesorders}.items() <= ours.items(), \
        "Zoho holds a sales order we lost track of"
    assert set(statuses.values()) == {"completed"}
    assert {o["status"] for o in fake.salesorders} == {"open"}


def test_a_daemon_killed_mid_batch_never_creates_a_sales_order_twice(db_url, engine, tmp_path, make_fake_zoho):
    run_and_kill(db_url, engine, tmp_path, make_fake_zoho, orders=18, timeouts=4)


@pytest.mark.slow
def test_a_daemon_killed_mid_batch_never_creates_a_sales_order_twice_at_length(db_url, engine, tmp_path,
                                                                                make_fake_zoho):
    run_and_kill(db_url, engine, tmp_path, make_fake_zoho, orders=80, timeouts=15)
