"""The MTN flow against the fake reseller (a real HTTP server): the `flow` fixture, registered for every test as a
pytest plugin (tests/conftest.py), and what tests do with it. Jobs run in-process on a frozen clock that the
fake shares, so history times line up."""
from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import Engine, insert, select

from jobs import apply_mtn_webhooks
from jobs.reconcile_mtn import ReconcileMtn
from jobs.submit_mtn import SubmitMtn
from reconciler.config import Config
from reconciler.engine.schema import mtn_orders, webhook_deliveries
from reconciler.http.listener import HttpListener
from reconciler.providers.mtn.fake import FakeMtn
from reconciler.providers.mtn.outbox import outbox_policy
from reconciler.providers.mtn.webhook_route import mtn_webhook_route

from tests.factories import job_context

KEY, SECRET = "flow-key", "flow-webhook-secret"


@dataclasses.dataclass
class Flow:
    engine: Engine
    fake: FakeMtn
    config: Config
    clock: Any

    def __post_init__(self) -> None:
        self.ctx = job_context(self.engine, self.config, self.clock)
        self.submit_job = SubmitMtn(self.config)
        self.reconcile_job = ReconcileMtn(self.config.mtn, outbox_policy(self.config).retries)

    def submit(self) -> None:
        self.submit_job.run(self.ctx)

    def apply_webhooks(self) -> None:
        apply_mtn_webhooks.run(self.ctx)

    def reconcile(self) -> None:
        self.reconcile_job.run(self.ctx)

    def add(self, *orders: dict) -> list[int]:
        """Rows as a shop inserts them: only the shop's columns."""
        rows = [{"shop_order_id": f"shop-{i}", "network": "MTN", "notify_url": None, **o}
                for i, o in enumerate(orders, 1)]
        with self.engine.begin() as conn:
            ids = list(conn.scalars(insert(mtn_orders).returning(mtn_orders.c.id), rows))
        # the rows are due at the database's "now", which the frozen clock may not have reached yet
        self.clock.now = max(self.clock.now, datetime.now(timezone.utc))
        return ids

    def orders(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return {r["shop_order_id"]: dict(r) for r in conn.execute(select(mtn_orders)).mappings()}

    def statuses(self) -> dict[str, str]:
        return {key: row["status"] for key, row in self.orders().items()}

    def events(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return sorted((r.order_ref, r.event_type) for r in conn.execute(select(webhook_deliveries)))


def settings(config: Config, **mtn: Any) -> Config:
    return dataclasses.replace(config, mtn=dataclasses.replace(config.mtn, **mtn))


@pytest.fixture
def flow(engine: Engine, clock) -> Iterator[Flow]:
    listener = HttpListener("127.0.0.1", 0, 65536, {
        ("POST", "/api/webhook/mtn"): mtn_webhook_route(engine, SECRET, clock)}).start()
    fake = FakeMtn(api_key=KEY, webhook_url=f"http://127.0.0.1:{listener.port}/api/webhook/mtn",
                   webhook_secret=SECRET, clock=clock, rng=random.Random(7)).start()
    config = settings(Config(), base_url=fake.url, api_key=KEY, webhook_secret=SECRET, request_timeout_seconds=1.0,
                      connect_timeout_seconds=1.0)
    try:
        yield Flow(engine, fake, config, clock)
    finally:
        fake.stop()
        listener.stop()
