"""What the outbox tables hold, for metrics, `status` and the demo: counts by status, the oldest wait,
how rows left a status."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Table, func, select

from reconciler.engine.drivers.common import QUEUED_SQL
from reconciler.engine.schema import status_history


@dataclass(frozen=True)
class TableStats:
    counts: dict[str, int]
    oldest_queued_age_seconds: float  # how far behind its turn the oldest due row is; 0 when nothing is due
    oldest_waiting_age_seconds: float  # age of the oldest queued row not due yet (deferred); 0 when none
    oldest_age_seconds: dict[str, float]  # per status present: age since created_at of its oldest row


def table_stats(engine: Engine, table: Table, now: datetime) -> TableStats:
    """Rows by status, how long the longest-waiting due row has waited, and how old the oldest row is that waits
    for a later turn (an order the balance does not cover, say: not due, yet not 0 s old). Both read through
    the claim index; counts and each status's oldest row come from one pass over the table."""
    t = table
    with engine.connect() as conn:
        groups = conn.execute(select(t.c.status, func.count(), func.min(t.c.created_at)).group_by(t.c.status)).all()
        oldest_due = conn.scalar(
            select(t.c.next_attempt_at)
            .where(t.c.status == QUEUED_SQL, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at, t.c.id)
            .limit(1))
        oldest_waiting = conn.scalar(
            select(func.min(t.c.created_at)).where(t.c.status == QUEUED_SQL, t.c.next_attempt_at > now))
    return TableStats({status: count for status, count, _ in groups}, _age(now, oldest_due), _age(now, oldest_waiting),
                      {status: _age(now, oldest) for status, _, oldest in groups})


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


def transitions_from(engine: Engine, table: Table, from_status: str) -> Counter[tuple[str, str]]:
    """How often rows left `from_status`, by (to_status, cause)."""
    h = status_history
    with engine.connect() as conn:
        rows = conn.execute(select(h.c.to_status, h.c.cause, func.count())
                            .where(h.c.table_name == table.name, h.c.from_status == from_status)
                            .group_by(h.c.to_status, h.c.cause)).all()
    return Counter({(to_status, cause): count for to_status, cause, count in rows})


def count_rows(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))
