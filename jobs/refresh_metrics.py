"""Refresh the gauges read from the database: outbox rows by status, oldest ages, paused providers and endpoints.

Every outbox table of the schema is read, whether or not a configured provider works it: rows piling up in a
table nobody claims are exactly what ops need to see. A provider's pause is read from the shared pauses table, so
every replica shows it (and its end by `reconciler resume`), whichever replica paused it."""
from __future__ import annotations

from reconciler.coordination.pauses import Pauses
from reconciler.engine import metrics
from reconciler.engine.job import JobContext
from reconciler.engine.schema import OUTBOX_TABLES, STATUSES_BY_TABLE
from reconciler.engine.stats import table_stats
from reconciler.webhooks import metrics as webhook_metrics
from reconciler.webhooks.endpoints import WEBHOOK_PAUSE_PREFIX, paused_count


def run(ctx: JobContext) -> None:
    now = ctx.clock()
    for table in OUTBOX_TABLES:
        stats = table_stats(ctx.engine, table, now)
        for status in STATUSES_BY_TABLE[table.name]:
            metrics.OUTBOX_ROWS.labels(table.name, status).set(stats.counts.get(status, 0))
            if status not in metrics.FINAL:
                metrics.OUTBOX_OLDEST_AGE.labels(table.name, status).set(stats.oldest_age_seconds.get(status, 0.0))
        metrics.OUTBOX_OLDEST_QUEUED_AGE.labels(table.name).set(stats.oldest_queued_age_seconds)
        metrics.OUTBOX_OLDEST_WAITING_AGE.labels(table.name).set(stats.oldest_waiting_age_seconds)
    webhook_metrics.WEBHOOK_ENDPOINTS_PAUSED.set(paused_count(ctx.engine, now))
    paused = {(pause.key, pause.reason or "unknown") for pause in Pauses(ctx.engine).all_paused()
              if not pause.key.startswith(WEBHOOK_PAUSE_PREFIX)}
    shown = {(sample.labels["provider"], sample.labels["reason"])
             for family in metrics.PROVIDER_PAUSED.collect() for sample in family.samples}
    for provider, reason in paused | shown:
        metrics.PROVIDER_PAUSED.labels(provider, reason).set(int((provider, reason) in paused))
