"""The SQL behind the order commands: enqueue an MTN order as a shop would, find one by reference, try
one again as a new attempt, and the counts the demo reports."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import Engine, RowMapping, or_, select

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.outbox import requeue
from reconciler.engine.schema import DEAD, FAILED, REJECTED, mtn_orders
from reconciler.engine.story import OrderRecord
from reconciler.providers.mtn.client import PROVIDER

RETRYABLE = (FAILED, REJECTED, DEAD)
# A retried order is a new attempt: nothing of the reseller's order, nor the recipient lock, carries over.
NEW_ATTEMPT = {"provider_order_id": None, "provider_status": None, "reject_reason": None, "recipient_lock": None,
               "submitted_at": None, "completed_at": None}


class DuplicateOrder(ValueError):
    """An order with this shop_order_id exists already."""


class AmbiguousOrder(ValueError):
    """The reference is one order's id and another order's shop_order_id."""


def enqueue_mtn(engine: Engine, shop_order_id: str, recipient_phone: str, size_gb: int, network: str = "MTN",
                notify_url: str | None = None) -> int:
    """INSERT the shop's columns only, as a shop system does; the new row's id."""
    with engine.begin() as conn:
        row_id = conn.scalar(
            insert_ignoring_conflicts(conn.dialect.name, mtn_orders, ["shop_order_id"])
            .values(shop_order_id=shop_order_id, recipient_phone=recipient_phone, network=network,
                    size_gb=size_gb, notify_url=notify_url)
            .returning(mtn_orders.c.id))
    if row_id is None:
        raise DuplicateOrder(f"an MTN order with shop_order_id {shop_order_id!r} exists already")
    return row_id


def find_mtn_order(engine: Engine, ref: str) -> RowMapping | None:
    """The order whose id or shop_order_id is `ref`."""
    t = mtn_orders
    match = t.c.shop_order_id == ref
    if ref.isdigit():
        match = or_(match, t.c.id == int(ref))
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(match).limit(2)).mappings().all()
    if len(rows) > 1:
        raise AmbiguousOrder(f"{ref!r} is one order's id and another order's shop_order_id")
    return rows[0] if rows else None


def mtn_order_record(engine: Engine, ref: str) -> OrderRecord | None:
    """The order whose id or shop_order_id is `ref`, as `reconciler order show` tells its story."""
    order = find_mtn_order(engine, ref)
    if order is None:
        return None
    shown = ("shop_order_id", "status", "recipient_phone", "network", "size_gb", "notify_url", "attempts",
             "provider_order_id", "provider_status", "reject_reason", "last_error", "created_at", "updated_at")
    return OrderRecord(PROVIDER, mtn_orders.name, order["id"], order["shop_order_id"], order["provider_order_id"],
                       {name: order[name] for name in shown})


def retry_mtn_order(engine: Engine, row_id: int, actor: str, now: datetime) -> bool:
    """Queue a failed, rejected or dead order again now as a new attempt with a fresh retry budget; False
    when it is in none of those statuses (any more)."""
    return bool(requeue(engine, mtn_orders, [row_id], actor, "retried", now, statuses=RETRYABLE, reset=NEW_ATTEMPT))


def mtn_orders_in(engine: Engine, statuses: Sequence[str]) -> list[RowMapping]:
    t = mtn_orders
    with engine.connect() as conn:
        return list(conn.execute(select(t.c.shop_order_id, t.c.status, t.c.recipient_phone, t.c.size_gb,
                                        t.c.reject_reason, t.c.last_error)
                                 .where(t.c.status.in_(list(statuses))).order_by(t.c.id)).mappings())
