"""The Zoho flow against the fake Zoho (a real HTTP server held to Zoho's OpenAPI documents) and a partner
receiver (a real HTTP endpoint): the `zoho_flow` fixture, and what tests do with it. Jobs run in-process on a
frozen clock that the fake shares, so token lifetimes and rate windows line up."""
from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import Engine, insert, select

from jobs.deliver_webhooks import DeliverWebhooks
from jobs.submit_zoho import SubmitZoho
from reconciler.config import Config, PartnerConfig, ZohoConfig
from reconciler.engine.schema import status_history, subscriptions, webhook_deliveries, zoho_orders
from reconciler.providers.zoho.fake import FakeZoho

from tests.factories import job_context
from tests.webhook_receiver import Receiver

PARTNER_SECRET = "whsec_" + base64.b64encode(b"zoho-flow-partner-secret-32-bytes").decode()
_numbers = itertools.count(1)


def zoho_settings(fake: FakeZoho, **zoho: Any) -> ZohoConfig:
    """zoho.* pointing at the fake, with short timeouts."""
    return dataclasses.replace(ZohoConfig(), accounts_url=fake.accounts_url, api_url=fake.api_url,
                               organization_id=fake.organization_id, client_id=fake.client_id,
                               client_secret=fake.client_secret, refresh_token=fake.refresh_token,
                               connect_timeout_seconds=1.0, request_timeout_seconds=1.0, **zoho)


@dataclasses.dataclass
class ZohoFlow:
    engine: Engine
    fake: FakeZoho
    receiver: Receiver
    config: Config
    clock: Any

    def __post_init__(self) -> None:
        self.ctx = job_context(self.engine, self.config, self.clock)
        self.submit_job = SubmitZoho(self.config)

    def reconfigure(self, **zoho: Any) -> None:
        """New zoho.* settings (a new job, as a restarted daemon would have)."""
        self.config = dataclasses.replace(self.config, zoho=dataclasses.replace(self.config.zoho, **zoho))
        self.__post_init__()

    def submit(self) -> None:
        self.submit_job.run(self.ctx)

    def deliver(self) -> None:
        DeliverWebhooks(self.config).run(self.ctx)

    def add(self, **order: Any) -> str:
        """A row as the partner intake (or a shop) inserts it: only its own columns; its order_id."""
        n = next(_numbers)
        row = {"order_id": f"T2M-{n:05d}", "customer_id": f"CUST-{n}", "customer_name": "Ada Obi",
               "customer_email": f"ada{n}@example.ng", "customer_phone": "+234 803 123 4567",
               "product_id": "ZOHO_CRM_STD", "tenure": "1_MONTH", **order}
        with self.engine.begin() as conn:
            conn.execute(insert(zoho_orders).values(**row))
        # the row is due at the database's "now", which the frozen clock may not have reached yet
        self.clock.now = max(self.clock.now, datetime.now(timezone.utc))
        return row["order_id"]

    def order(self, order_id: str) -> dict:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(zoho_orders).where(zoho_orders.c.order_id == order_id)).mappings().one())

    def statuses(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(zoho_orders.c.order_id, zoho_orders.c.status)).all())

    def history(self, order_id: str) -> list[tuple[str, str, str]]:
        h = status_history
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(h.c.from_status, h.c.to_status, h.c.cause)
                .where(h.c.table_name == "zoho_orders", h.c.row_id == self.order(order_id)["id"]).order_by(h.c.id))]

    def events(self, order_id: str | None = None) -> list[tuple[str, str, dict]]:
        """(order_ref, type, data) of the partner events queued, in order."""
        d = webhook_deliveries
        query = select(d.c.order_ref, d.c.event_type, d.c.payload).where(d.c.order_table == "zoho_orders")
        if order_id is not None:
            query = query.where(d.c.order_ref == order_id)
        with self.engine.connect() as conn:
            return [(r.order_ref, r.event_type, json.loads(r.payload)["data"])
                    for r in conn.execute(query.order_by(d.c.id))]

    def licences(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(subscriptions).order_by(subscriptions.c.id)).mappings()]


@pytest.fixture
def zoho_flow(engine: Engine, clock, make_fake_zoho: Callable[..., FakeZoho]) -> Iterator[ZohoFlow]:
    fake = make_fake_zoho(clock=clock)
    receiver = Receiver()
    config = dataclasses.replace(
        Config(), zoho=zoho_settings(fake),
        partner=dataclasses.replace(PartnerConfig(), webhook_url=receiver.url("/t2mobile/events"),
                                    webhook_secret=PARTNER_SECRET))
    try:
        yield ZohoFlow(engine, fake, receiver, config, clock)
    finally:
        receiver.close()
