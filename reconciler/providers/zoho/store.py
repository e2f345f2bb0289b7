"""The SQL of the Zoho flow beyond the generic outbox: the mark an order carries once a sales order was requested
for it, and in-doubt orders queued again when their grace is over."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, RowMapping, func, select, update

from reconciler.engine.drivers.common import IN_FLIGHT_SQL, record_history
from reconciler.engine.outbox import Outcome
from reconciler.engine.schema import IN_DOUBT, QUEUED, zoho_orders
from reconciler.providers.zoho.lifecycle import QUEUED_AGAIN


def mark_requested(engine: Engine, row_id: int, worker: str, now: datetime, lease_needed_until: datetime) -> bool:
    """Before a sales order is created for the order: record that one was requested (from now on every attempt
    searches Zoho before creating), if this worker still holds the order with its lease lasting at least until
    `lease_needed_until`. False: do not create (the lease was lost, or would end while the create is out)."""
    t = zoho_orders
    with engine.begin() as conn:
        return bool(conn.execute(
            update(t).where(t.c.id == row_id, t.c.status == IN_FLIGHT_SQL, t.c.locked_by == worker,
                            t.c.locked_until >= lease_needed_until)
            .values(submitted_at=func.coalesce(t.c.submitted_at, now))).rowcount)


def queue_in_doubt_again(engine: Engine, in_doubt_since: datetime, actor: str, now: datetime,
                         limit: int = 500) -> list[tuple[RowMapping, Outcome]]:
    """In-doubt orders untouched since `in_doubt_since` go back to the queue, due now: their next attempt
    searches Zoho by reference_number and adopts what it finds before it may create anything. Each (order as it
    was, the outcome written), for the lifecycle log. Compare-and-set on the status, so replicas move each once."""
    t = zoho_orders
    with engine.begin() as conn:
        rows = conn.execute(select(t).where(t.c.status == IN_DOUBT, t.c.updated_at <= in_doubt_since)
                            .order_by(t.c.updated_at).limit(limit).with_for_update(skip_locked=True)).mappings().all()
        moved = []
        for row in rows:
            outcome = Outcome(row["id"], QUEUED, QUEUED_AGAIN, {"next_attempt_at": now})
            if conn.execute(update(t).where(t.c.id == row["id"], t.c.status == IN_DOUBT)
                            .values(status=QUEUED, next_attempt_at=now, updated_at=now)).rowcount:
                moved.append((row, outcome))
        record_history(conn, t.name, [(row["id"], IN_DOUBT, QUEUED, QUEUED_AGAIN) for row, _ in moved], actor, now)
    return moved

