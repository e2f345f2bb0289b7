"""The SQL behind the Zoho order commands: enqueue a T2Mobile order as a shop (or the intake API) would, find one
by reference for `order show`, and what the demo reports."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Engine, RowMapping, or_, select

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import zoho_orders
from reconciler.engine.story import OrderRecord

PROVIDER = "zoho"
SHOWN = ("order_id", "status", "customer_id", "customer_name", "customer_email", "customer_phone", "product_id",
         "tenure", "attempts", "zoho_salesorder_id", "activation_reference", "expiry_date", "renewal",
         "reject_reason", "last_error", "submitted_at", "completed_at", "created_at", "updated_at")


class DuplicateOrder(ValueError):
    """An order with this order_id exists already."""


class AmbiguousOrder(ValueError):
    """The reference is one order's id and another order's order_id."""


def enqueue_zoho(engine: Engine, order_id: str, product_id: str, tenure: str, customer_id: str, customer_name: str,
                 customer_email: str, customer_phone: str | None = None) -> int:
    """INSERT the partner's columns only, as a shop system does; the new row's id."""
    with engine.begin() as conn:
        row_id = conn.scalar(
            insert_ignoring_conflicts(conn.dialect.name, zoho_orders, ["order_id"])
            .values(order_id=order_id, product_id=product_id, tenure=tenure, customer_id=customer_id,
                    customer_name=customer_name, customer_email=customer_email, customer_phone=customer_phone)
            .returning(zoho_orders.c.id))
    if row_id is None:
        raise DuplicateOrder(f"a Zoho order with order_id {order_id!r} exists already")
    return row_id


def find_zoho_order(engine: Engine, ref: str) -> RowMapping | None:
    """The order whose id, T2Mobile order_id or Zoho sales order id is `ref`."""
    t = zoho_orders
    match = or_(t.c.order_id == ref, t.c.zoho_salesorder_id == ref)
    if ref.isdigit():
        match = or_(match, t.c.id == int(ref))
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(match).limit(2)).mappings().all()
    if len(rows) > 1:
        raise AmbiguousOrder(f"{ref!r} names two Zoho orders (one's id, another's order_id or sales order id)")
    return rows[0] if rows else None


def zoho_order_record(engine: Engine, ref: str) -> OrderRecord | None:
    """The order whose id, order_id or sales order id is `ref`, as `reconciler order show` tells its story."""
    order = find_zoho_order(engine, ref)
    if order is None:
        return None
    return OrderRecord(PROVIDER, zoho_orders.name, order["id"], order["order_id"], order["zoho_salesorder_id"],
                       {name: order[name] for name in SHOWN})


def zoho_orders_in(engine: Engine, statuses: Sequence[str]) -> list[RowMapping]:
    t = zoho_orders
    with engine.connect() as conn:
        return list(conn.execute(select(t.c.order_id, t.c.status, t.c.product_id, t.c.tenure, t.c.reject_reason,
                                        t.c.last_error)
                                 .where(t.c.status.in_(list(statuses))).order_by(t.c.id)).mappings())
