"""Webhook deliveries: their outbox policy, the attempt log, listing, and choosing what to replay."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import Engine, RowMapping, func, insert, or_, select

from reconciler.config import Config
from reconciler.engine.outbox import OutboxPolicy
from reconciler.engine.schema import QUEUED
from reconciler.engine.schema import webhook_attempts as attempts
from reconciler.engine.schema import webhook_deliveries as deliveries


def log_attempt(engine: Engine, **attempt: object) -> None:
    with engine.begin() as conn:
        conn.execute(insert(attempts).values(**attempt))


def find_deliveries(engine: Engine, *, status: str | None = None, order_ref: str | None = None,
                    since: datetime | None = None, refs: Sequence[str] = (), limit: int | None = None
                    ) -> list[RowMapping]:
    """Deliveries, newest first; `refs` are event ids (msg_...) or row ids."""
    query = select(deliveries).order_by(deliveries.c.id.desc())
    if status:
        query = query.where(deliveries.c.status == status)
    if order_ref:
        query = query.where(deliveries.c.order_ref == order_ref)
    if since:
        query = query.where(deliveries.c.occurred_at >= since)
    if refs:
        row_ids = [int(r) for r in refs if r.isdigit()]
        query = query.where(or_(deliveries.c.event_id.in_(list(refs)), deliveries.c.id.in_(row_ids)))
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return list(conn.execute(query).mappings())


def delivery_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Deliveries by (order_table, status): which flow's events went, which wait, which are dead."""
    with engine.connect() as conn:
        return {(table, status): count for table, status, count in conn.execute(
            select(deliveries.c.order_table, deliveries.c.status, func.count())
            .group_by(deliveries.c.order_table, deliveries.c.status))}


def attempts_of(engine: Engine, delivery_ids: Sequence[int]) -> dict[int, list[RowMapping]]:
    with engine.connect() as conn:
        rows = conn.execute(select(attempts).where(attempts.c.delivery_id.in_(list(delivery_ids)))
                            .order_by(attempts.c.id)).mappings()
        found: dict[int, list[RowMapping]] = {}
        for row in rows:
            found.setdefault(row["delivery_id"], []).append(row)
    return found


def delivery_outbox_policy(config: Config) -> OutboxPolicy:
    """A delivery whose lease was rescued is simply sent again: the receiver dedupes on the webhook-id."""
    return OutboxPolicy(deliveries, config.partner.retry_schedule_seconds, rescue_status=QUEUED)
