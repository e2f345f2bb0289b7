"""Test data made the way the system makes it: shop rows with only the shop's columns, events through
emit_events, job contexts through the daemon's own assembly (reconciler.app)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert

from reconciler.app import assemble
from reconciler.config import Config
from reconciler.engine.clock import Clock
from reconciler.engine.events import Event, emit_events
from reconciler.engine.job import JobContext
from reconciler.engine.schema import mtn_orders


def add_mtn_orders(engine: Engine, count: int, due_at: datetime | None = None, prefix: str = "shop") -> list[int]:
    rows = [{"shop_order_id": f"{prefix}-{i}", "recipient_phone": "0241234567", "size_gb": 1 + i % 5}
            for i in range(count)]
    if due_at is not None:
        for row in rows:
            row["next_attempt_at"] = due_at
    with engine.begin() as conn:
        return list(conn.scalars(insert(mtn_orders).returning(mtn_orders.c.id), rows))


def job_context(engine: Engine, config: Config, clock: Clock, worker: str = "test-worker") -> JobContext:
    return assemble(config, engine, worker_id=worker, clock=clock).context


def queue_events(engine: Engine, events: list[Event], at: datetime, order_table: str = "mtn_orders") -> list[str]:
    """Events as a job emits them: inside a transaction of its own state change."""
    with engine.begin() as conn:
        return emit_events(conn, order_table, events, at)
