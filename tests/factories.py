"""Rows as a shop system writes them: only the shop's own columns, the daemon's have defaults."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert

from reconciler.schema import mtn_orders


def add_mtn_orders(engine: Engine, count: int, due_at: datetime | None = None, prefix: str = "shop") -> list[int]:
    rows = [{"shop_order_id": f"{prefix}-{i}", "recipient_phone": "0241234567", "size_gb": 1 + i % 5}
            for i in range(count)]
    if due_at is not None:
        for row in rows:
            row["next_attempt_at"] = due_at
    with engine.begin() as conn:
        return list(conn.scalars(insert(mtn_orders).returning(mtn_orders.c.id), rows))
