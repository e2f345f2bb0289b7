"""Apply stored MTN webhooks to their orders: read the event, decide (mtn_settlement), write the change
and mark the event done in one transaction.

The receiver only stores events, so it answers in milliseconds. An event whose order is not known yet
(still being sent, or in doubt) waits until its order gets the reseller's id. An event that cannot be
applied (a body we cannot read) is closed with its error, so the events behind it go on.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from reconciler.engine.job import JobContext
from reconciler.providers.mtn import metrics as mtn_metrics
from reconciler.providers.mtn.client import PROVIDER, parse_webhook
from reconciler.providers.mtn.lifecycle import log_step
from reconciler.providers.mtn.settlement import settlement
from reconciler.providers.mtn.store import applicable_webhooks, apply_webhook, close_webhook

log = logging.getLogger(__name__)
EVENTS_PER_READ = 500


def run(ctx: JobContext) -> None:
    watch = timedelta(hours=ctx.config.mtn.completed_watch_hours)
    while not ctx.stop.is_set():
        events = applicable_webhooks(ctx.engine, PROVIDER, EVENTS_PER_READ)
        if not events:
            return
        for event_row_id, raw_body, order in events:
            now = ctx.clock()
            try:
                change = settlement(order, parse_webhook(raw_body.encode()).order, now, watch, cause="webhook")
            except Exception as exc:  # kept, it would block every event behind it on every run
                error = f"cannot be applied: {type(exc).__name__}: {exc}"
                log.warning("MTN webhook %d for order %s closed unapplied: %s", event_row_id,
                            order["shop_order_id"], error)
                close_webhook(ctx.engine, event_row_id, error, now)
                continue
            if not apply_webhook(ctx.engine, event_row_id, order, change, ctx.worker_id, now):
                return  # the order moved meanwhile: read it again next run, with this event still pending
            if change is not None:
                log_step(order, change)
                mtn_metrics.MTN_SETTLED.labels("webhook", change.status).inc()
