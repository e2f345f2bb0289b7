"""The partner intake's reads and writes of `zoho_orders`: an order goes in exactly as a shop's INSERT would put
it (only the shop's columns; status, lease and timestamps are the daemon's defaults), and comes back as the
partner sees it."""
from __future__ import annotations

from typing import Mapping

from sqlalchemy import Connection, Engine, RowMapping, select

from reconciler.engine.db import insert_ignoring_conflicts
from reconciler.engine.schema import zoho_orders

SHOP_COLUMNS = ("order_id", "idempotency_key", "customer_id", "customer_name", "customer_email", "customer_phone",
                "product_id", "tenure")
_SHOWN = (zoho_orders.c.order_id, zoho_orders.c.product_id, zoho_orders.c.tenure, zoho_orders.c.customer_id,
          zoho_orders.c.status, zoho_orders.c.zoho_salesorder_id, zoho_orders.c.activation_reference,
          zoho_orders.c.expiry_date, zoho_orders.c.reject_reason, zoho_orders.c.last_error,
          zoho_orders.c.created_at, zoho_orders.c.updated_at)


def find_order(engine: Engine | Connection, order_id: str) -> RowMapping | None:
    query = select(*_SHOWN).where(zoho_orders.c.order_id == order_id)
    if isinstance(engine, Connection):
        return engine.execute(query).mappings().first()
    with engine.connect() as conn:
        return conn.execute(query).mappings().first()


def insert_order(conn: Connection, order: Mapping[str, str]) -> RowMapping | None:
    """The new order as shown, or None when an order with this order_id already exists (also one a concurrent
    request has just written: the unique order_id decides, in every replica)."""
    inserted = conn.execute(insert_ignoring_conflicts(conn.dialect.name, zoho_orders, ["order_id"])
                            .values({column: order[column] for column in SHOP_COLUMNS})
                            .returning(zoho_orders.c.id)).first()
    return None if inserted is None else find_order(conn, order["order_id"])
