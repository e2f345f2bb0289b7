"""The real daemon (`reconciler run`, a subprocess) against the fake reseller that times out after creating
orders, drops and duplicates webhooks: killed with SIGKILL mid-batch and restarted, it ends with every
order final, none sent twice, none lost."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import Table, func, insert, select

from reconciler.engine.migrate import migrate
from reconciler.engine.schema import TERMINAL_STATUSES, mtn_orders
from reconciler.providers.mtn.fake import FakeMtn, MtnFaults

KEY, SECRET = "daemon-test-key", "daemon-test-webhook-secret"
ORDERS = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_daemon_killed_mid_batch_loses_nothing_and_sends_nothing_twice(db_url, engine, tmp_path):
    migrate(engine)
    receiver_port = free_port()
    faults = MtnFaults(timeout_after_create_rate=0.25, timeout_sleep_seconds=1.5, webhook_drop_rate=0.3,
                       webhook_duplicate_rate=0.2, error_5xx_rate=0.05)
    fake = FakeMtn(api_key=KEY, webhook_secret=SECRET, faults=faults, rng=random.Random(11),
                   webhook_url=f"http://127.0.0.1:{receiver_port}/api/webhook/mtn", auto_process_seconds=0.3).start()
    config = tmp_path / "config.yaml"
    config.write_text(f"""database:
  url: {db_url}
mtn:
  base_url: {fake.url}
  api_key: ${{MTN_API_KEY}}
  webhook_secret: ${{MTN_WEBHOOK_SECRET}}
  connect_timeout_seconds: 0.5
  request_timeout_seconds: 0.5
  retry_schedule_seconds: [0.2, 0.2, 0.2]
  poll_interval_seconds: 0.05
  reconcile_interval_seconds: 0.3
  in_doubt_grace_seconds: 1
  max_in_flight: 4
admin:
  port: 0
receiver:
  host: 127.0.0.1
  port: {receiver_port}
daemon:
  batch_size: 10
  lease_seconds: 2
  rescue_interval_seconds: 0.2
webhooks:
  connect_timeout_seconds: 0.5
  timeout_seconds: 1
""")
    env = {**os.environ, "MTN_API_KEY": KEY, "MTN_WEBHOOK_SECRET": SECRET}
    with engine.begin() as conn:
        conn.execute(insert(mtn_orders), [{"shop_order_id": f"kill-{i}", "recipient_phone": f"02400{i:05d}",
                                           "network": "MTN", "size_gb": 1 + i % 3} for i in range(ORDERS)])

    def daemon() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "reconciler", "--config", str(config), "run"], env=env,
                                stderr=subprocess.DEVNULL)

    first = daemon()
    try:
        assert fake.wait_for_orders(ORDERS // 3, timeout=30), "the first daemon never got going"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with engine.connect() as conn:
            caught = conn.scalar(select(func.count()).where(mtn_orders.c.status.in_(["in_flight", "in_doubt"])))
        assert caught > 0, "the kill caught no work in progress: this run proves nothing"
        second = daemon()
        try:
            statuses = wait_until_settled(engine, deadline_seconds=60)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        fake.stop()
        if first.poll() is None:
            first.kill()

    assert set(statuses.values()) <= set(TERMINAL_STATUSES), Counter(statuses.values())
    created = Counter((o["recipient_phone"], o["size_mb"] // 1024) for o in fake.orders)
    assert max(created.values()) == 1, "an order was sent twice"
    with engine.connect() as conn:
        ours = {row.provider_order_id for row in conn.execute(select(mtn_orders.c.provider_order_id))}
    assert {str(o["id"]) for o in fake.orders} <= ours, "the reseller holds an order we lost track of"
    assert len(created) == sum(1 for s in statuses.values() if s in ("completed", "failed"))


def wait_until_settled(engine, deadline_seconds: float, table: Table = mtn_orders) -> dict[int, str]:
    """Poll the database (the daemon is another process) until every order is final or time is up; status by id."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        with engine.connect() as conn:
            statuses = dict(conn.execute(select(table.c.id, table.c.status)).all())
        if set(statuses.values()) <= set(TERMINAL_STATUSES) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)
