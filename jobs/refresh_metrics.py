"""Refresh the outbox gauges (rows by status, oldest queued age) from the database."""
from __future__ import annotations

from reconciler import metrics
from reconciler.job import JobContext
from reconciler.outbox import table_stats
from reconciler.schema import STATUSES_BY_TABLE


def run(ctx: JobContext) -> None:
    now = ctx.clock()
    for outbox in ctx.outboxes.values():
        stats = table_stats(ctx.engine, outbox.table, now)
        for status in STATUSES_BY_TABLE[outbox.name]:
            metrics.OUTBOX_ROWS.labels(outbox.name, status).set(stats.counts.get(status, 0))
        metrics.OUTBOX_OLDEST_QUEUED_AGE.labels(outbox.name).set(stats.oldest_queued_age_seconds)
