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
    oldest_queued_age_seconds: float  # 0 when nothing is due


def table_stats(engine: Engine, table: Table, now: datetime) -> TableStats:
    """Rows by status and how long the longest-waiting due row has waited (read through the claim index)."""
    t = table
    with engine.connect() as conn:
        counts = dict(conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all())
        oldest_due = conn.scalar(
            select(t.c.next_attempt_at)
            .where(t.c.status == QUEUED_SQL, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at, t.c.id)
            .limit(1))
    age = (now - oldest_due).total_seconds() if oldest_due is not None else 0.0
    return TableStats(counts, max(age, 0.0))


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
