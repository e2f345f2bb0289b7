"""Refresh the gauges read from the database: outbox rows by status, oldest queued age, paused endpoints."""
from __future__ import annotations

from reconciler.engine import metrics
from reconciler.engine.job import JobContext
from reconciler.engine.outbox import table_stats
from reconciler.engine.schema import STATUSES_BY_TABLE
from reconciler.webhooks.endpoints import paused_count


def run(ctx: JobContext) -> None:
    now = ctx.clock()
    for outbox in ctx.outboxes.values():
        stats = table_stats(ctx.engine, outbox.table, now)
        for status in STATUSES_BY_TABLE[outbox.name]:
            metrics.OUTBOX_ROWS.labels(outbox.name, status).set(stats.counts.get(status, 0))
        metrics.OUTBOX_OLDEST_QUEUED_AGE.labels(outbox.name).set(stats.oldest_queued_age_seconds)
    metrics.WEBHOOK_ENDPOINTS_PAUSED.set(paused_count(ctx.engine, now))
