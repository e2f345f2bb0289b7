"""Status changes outside a lease (a webhook, reconciliation, a person): compare-and-set on the status
the caller saw, so two writers that race decide once, and each change emits its events once."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Table, event, update

from reconciler.engine import metrics
from reconciler.engine.drivers.common import record_history
from reconciler.engine.events import emit_events
from reconciler.engine.outbox import Outcome


def move(conn: Connection, table: Table, outcome: Outcome, from_status: str, actor: str, now: datetime) -> bool:
    """Write the outcome if the row is still `from_status` (and not leased); False when someone else moved
    it first. Its events are queued in the same transaction."""
    t = table
    moved = conn.execute(
        update(t).where(t.c.id == outcome.row_id, t.c.status == from_status, t.c.locked_by.is_(None))
        .values(status=outcome.status, updated_at=now, **outcome.fields)).rowcount
    if moved:
        record_history(conn, t.name, [(outcome.row_id, from_status, outcome.status, outcome.cause)], actor, now)
        emit_events(conn, t.name, list(outcome.events), now)
        if outcome.status in metrics.FINAL:  # counted when the caller's transaction commits, not before
            event.listen(conn, "commit", lambda _: metrics.OUTBOX_OUTCOMES.labels(t.name, outcome.status).inc(),
                         once=True)
    return bool(moved)
