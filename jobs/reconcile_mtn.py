"""Reconcile MTN orders with the reseller's order history, so a missed webhook never leaves an order
stuck: one history fetch per cycle, matched in memory against our unsettled and watched orders.

- submitted orders settle by their provider order id;
- an in-doubt order adopts the one history order that matches it (recipient, size, network, time) and
  that no other row owns (with several it stays in doubt for a person); only when the history covers its
  time and shows nothing for `mtn.in_doubt_grace_seconds` is it queued again (or dead, when its retries
  are spent);
- completed orders are watched for `mtn.completed_watch_hours`: a reversal makes them failed;
- webhooks that waited that long for an order we never had are closed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping, Sequence

from sqlalchemy import Engine, RowMapping

from reconciler.config import MtnConfig
from reconciler.engine.clock import Clock
from reconciler.engine.job import JobContext
from reconciler.engine.outbox import Outcome, RetryPolicy
from reconciler.engine.schema import DEAD, IN_DOUBT, QUEUED
from reconciler.providers.mtn import metrics as mtn_metrics
from reconciler.providers.mtn.client import PROVIDER, MtnClient, MtnError, ProviderOrder, ResellerStatus, mtn_client
from reconciler.providers.mtn.events import ShopEvent, customer_events
from reconciler.providers.mtn.lifecycle import log_step
from reconciler.providers.mtn.settlement import find_matches, settlement
from reconciler.providers.mtn.store import (
    expire_orphan_webhooks, owned_provider_ids, settle_order, unsettled_orders, watched_orders,
)

log = logging.getLogger(__name__)


@dataclass
class CycleReport:
    checked: int = 0
    settled: int = 0
    requeued: int = 0
    still_open: int = 0


class ReconcileMtn:
    """The job, and the same cycle for `reconciler reconcile` (optionally limited to some orders)."""

    def __init__(self, settings: MtnConfig, retries: RetryPolicy, client: MtnClient | None = None) -> None:
        self.settings = settings
        self.retries = retries
        self.client = client

    def run(self, ctx: JobContext) -> None:
        if self.client is None:
            self.client = mtn_client(ctx.config, ctx.engine, ctx.clock)
        self.cycle(ctx.engine, ctx.clock, ctx.worker_id)

    def cycle(self, engine: Engine, clock: Clock, actor: str,
              only: Callable[[Mapping], bool] = lambda order: True,
              progress: Callable[[int, int], None] = lambda done, total: None) -> CycleReport | None:
        """One pass; None when the history could not be read (nothing is decided without it)."""
        assert self.client is not None
        try:
            history = self.client.history()
        except MtnError as exc:
            log.warning("MTN history unavailable, nothing reconciled this cycle: %s", exc.message)
            mtn_metrics.MTN_RECONCILE_RUNS.labels("history_unavailable").inc()
            return None
        now = clock()
        watch = timedelta(hours=self.settings.completed_watch_hours)
        by_id = {said.id: said for said in history}
        unsettled = unsettled_orders(engine)
        reversed_ids = [said.id for said in history if said.status == ResellerStatus.FAILED]
        orders = [o for o in unsettled + watched_orders(engine, reversed_ids, now - watch) if only(o)]
        unmatched = any(not o["provider_order_id"] for o in orders)
        owned = owned_provider_ids(engine, by_id) if unmatched else set()
        report = CycleReport()
        for done, order in enumerate(orders, 1):
            outcome = self.decide(order, history, by_id, owned, unsettled, now, watch)
            report.checked += 1
            if outcome is None:
                report.still_open += order["status"] == IN_DOUBT
            elif settle_order(engine, order, outcome, actor, now):
                log_step(order, outcome)
                if outcome.fields.get("provider_order_id"):
                    owned.add(outcome.fields["provider_order_id"])
                if outcome.status in (QUEUED, DEAD) and order["status"] == IN_DOUBT:
                    report.requeued += 1
                else:
                    report.settled += 1
                mtn_metrics.MTN_SETTLED.labels("history", outcome.status).inc()
            progress(done, len(orders))
        expire_orphan_webhooks(engine, PROVIDER, now - watch, now)
        mtn_metrics.MTN_RECONCILE_RUNS.labels("ok").inc()
        return report

    def decide(self, order: RowMapping, history: Sequence[ProviderOrder], by_id: Mapping[str, ProviderOrder],
               owned: set[str], unsettled: Sequence[Mapping], now: datetime, watch: timedelta) -> Outcome | None:
        if order["provider_order_id"]:
            said = by_id.get(order["provider_order_id"])
            return settlement(order, said, now, watch, cause="history") if said else None
        window = timedelta(seconds=self.settings.match_window_seconds)
        found = find_matches(order, history, owned, window)
        if len(found) == 1:
            return settlement(order, found[0], now, watch, cause="found_in_history")
        if found:
            log.warning("MTN order %s stays in doubt: %d history orders match it (%s); a person must decide",
                        order["shop_order_id"], len(found), ", ".join(said.id for said in found))
            return None
        sent_at = order["submitted_at"] or order["updated_at"]
        if (now - sent_at).total_seconds() < self.settings.in_doubt_grace_seconds:
            return None
        if not covers(by_id, unsettled, sent_at - window):
            log.warning("MTN order %s stays in doubt: the history does not reach back to %s",
                        order["shop_order_id"], sent_at.isoformat())
            return None
        return self.requeue(order, now)

    def requeue(self, order: Mapping, now: datetime) -> Outcome:
        """Proven absent: the attempt never created an order. Queue it again, or dead when retries are spent."""
        error = "not in the reseller's history after the grace period: the attempt created no order"
        if self.retries.exhausted(order["attempts"]):
            return Outcome(order["id"], DEAD, "retries_exhausted", {"recipient_lock": None, "last_error": error},
                           customer_events(order, ShopEvent.ORDER_DEAD, DEAD, reason=error))
        return Outcome(order["id"], QUEUED, "not_in_history",
                       {"recipient_lock": None, "next_attempt_at": now, "last_error": error})


def covers(by_id: Mapping[str, ProviderOrder], known: Sequence[Mapping], since: datetime) -> bool:
    """Does the history reach back to `since`? It must show every unsettled order we know the reseller
    created since then: a history cut to its latest entries proves nothing about older ones."""
    return all(order["provider_order_id"] in by_id for order in known
               if order["provider_order_id"] and order["submitted_at"] and order["submitted_at"] >= since)
