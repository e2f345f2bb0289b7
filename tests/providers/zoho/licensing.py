"""Zoho orders and their fulfilment as the flow makes them, for the licence tests: a partner's INSERT, then
provision() inside the transaction that completes the order."""
from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import datetime
from typing import Mapping

from sqlalchemy import Engine, insert, select, update

from reconciler.config import TENURES, Config
from reconciler.engine.schema import COMPLETED, webhook_deliveries, zoho_orders
from reconciler.providers.zoho.licences import Licence, provision

_numbers = itertools.count(1)


def add_order(engine: Engine, customer: str = "CUST-1", product: str = "ZOHO_CRM_STD", tenure: str = "1_MONTH",
              order_id: str | None = None) -> Mapping:
    """A zoho_orders row with the partner's columns only."""
    order_id = order_id or f"T2M-ORD-{next(_numbers)}"
    with engine.begin() as conn:
        row_id = conn.scalar(insert(zoho_orders).values(
            order_id=order_id, customer_id=customer, customer_name="Ada Obi",
            customer_email=f"{customer.lower()}@example.ng", product_id=product, tenure=tenure
        ).returning(zoho_orders.c.id))
    return order_row(engine, row_id)


def order_row(engine: Engine, row_id: int) -> Mapping:
    with engine.connect() as conn:
        return conn.execute(select(zoho_orders).where(zoho_orders.c.id == row_id)).mappings().one()


def fulfil(engine: Engine, order: Mapping, now: datetime) -> Licence:
    """What the fulfilment does in one transaction: provision, then complete the order with the licence."""
    with engine.begin() as conn:
        licence = provision(conn, order, TENURES[order["tenure"]], now)
        conn.execute(update(zoho_orders).where(zoho_orders.c.id == order["id"]).values(
            status=COMPLETED, activation_reference=licence.activation_reference, expiry_date=licence.expiry_date,
            updated_at=now))
    return licence


PARTNER_URL = "http://127.0.0.1:9/t2mobile/events"


def partner_config(timezone: str = "Africa/Lagos", reminder_days: int = 7) -> Config:
    partner = dataclasses.replace(Config().partner, webhook_url=PARTNER_URL, timezone=timezone,
                                  reminder_days=reminder_days)
    return dataclasses.replace(Config(), partner=partner)


def partner_events(engine: Engine, event_type: str) -> list[dict]:
    """The events of this type queued for the partner, oldest first: their data, with the order they name."""
    d = webhook_deliveries
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.payload).where(d.c.event_type == event_type, d.c.endpoint_url == PARTNER_URL)
                            .order_by(d.c.id)).scalars().all()
    return [json.loads(payload)["data"] for payload in rows]
