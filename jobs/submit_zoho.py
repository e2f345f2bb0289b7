"""Fulfil due T2Mobile orders through Zoho Books: claim a batch; check each order against the catalogue (a bad
one is rejected and T2Mobile told); find or create the customer by e-mail; create the sales order (the
catalogue's item at the tenure's price, reference_number = the T2Mobile order id) and mark it open; then
complete the order, provision its licence and queue ORDER_FULFILLED in one transaction.

A sales order is never created twice. Once one was requested for an order (`submitted_at`, written fenced on
the lease right before the create), every later attempt first searches Zoho by reference_number and adopts what
it finds. An answer lost after the create leaves the order in_doubt (so does a worker dying mid-order, through
the rescuer); after zoho.in_doubt_grace_seconds it is queued again, to search and adopt or else create.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Mapping

from sqlalchemy import RowMapping

from reconciler.config import Config
from reconciler.coordination.pauses import Pauses
from reconciler.engine.job import JobContext
from reconciler.engine.outbox import Batch, Outbox, Outcome
from reconciler.engine.schema import COMPLETED, DEAD, FAILED, IN_DOUBT, QUEUED, REJECTED, zoho_orders
from reconciler.http.audit import AuditLog
from reconciler.http.client import OrderRef
from reconciler.providers.zoho import metrics
from reconciler.providers.zoho.catalogue import LineItem, Rejection, check_order
from reconciler.providers.zoho.client import (
    SalesOrder, ZohoAuthFailed, ZohoClient, ZohoDailyCapReached, ZohoRateLimited, ZohoRejected, ZohoUnavailable,
)
from reconciler.providers.zoho.fulfilment import DRAFT, VOID, fulfilment, order_failed
from reconciler.providers.zoho.lifecycle import log_step
from reconciler.providers.zoho.oauth import PAUSE_KEY
from reconciler.providers.zoho.store import mark_requested, queue_in_doubt_again

log = logging.getLogger(__name__)
PROVIDER_PAUSED, LEASE_TOO_SHORT, RATE_LIMITED = "provider_paused", "lease_too_short", "rate_limited"
AUDIT_DELAY_SECONDS = 0.05  # calls are recorded together; a crash loses at most this much of the audit


class SubmitZoho:
    """The job; between runs it keeps its client (and the client's keep-alive connection)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        settings = config.zoho
        self.batch_size = config.daemon.batch_size
        self.call_seconds = settings.connect_timeout_seconds + settings.request_timeout_seconds
        # An order in doubt waits its grace, and at least until a create that its worker may still have sent has
        # timed out: the lease had one call's time left when the create was marked, which may then have waited
        # up to a rate window for room before it went out.
        self.grace = timedelta(seconds=max(settings.in_doubt_grace_seconds,
                                           self.call_seconds + settings.rate_window_seconds))
        self.client: ZohoClient | None = None
        self.audit: AuditLog | None = None

    def run(self, ctx: JobContext) -> None:
        """Queue again the in-doubt orders whose grace is over, then batch after batch until none is due or Zoho
        holds the flow back (a pause: rate limit, daily cap, refused credentials)."""
        if self.client is None:
            self.audit = AuditLog(ctx.engine, ctx.clock, max_delay_seconds=AUDIT_DELAY_SECONDS)
            self.client = ZohoClient(ctx.config.zoho, ctx.engine, ctx.worker_id, clock=ctx.clock, audit=self.audit,
                                     stop=ctx.stop)
        for order, outcome in queue_in_doubt_again(ctx.engine, ctx.clock() - self.grace, ctx.worker_id,
                                                   ctx.clock()):
            log_step(order, outcome)
        outbox = ctx.outboxes[zoho_orders.name]
        try:
            while not ctx.stop.is_set():
                batch_size, probing = self.may_go(ctx)
                if not batch_size:
                    return
                with outbox.claim_batch(batch_size, ctx.stop, reserve_seconds=self.call_seconds) as batch:
                    for row in batch:
                        self.handle(ctx, outbox, batch, row)
                rows = {row["id"]: row for row in batch.rows}
                for outcome in batch.written():
                    log_step(rows[outcome.row_id], outcome)
                if probing and _answered(batch):  # Zoho answered the probe: open the flow for every replica
                    Pauses(ctx.engine).resume(PAUSE_KEY, ctx.clock())
                if len(batch.rows) < batch_size or _held_back(batch):
                    return
        finally:
            self.audit.flush()  # nothing waits in memory once the job is idle (or stopping)

    def may_go(self, ctx: JobContext) -> tuple[int, bool]:
        """How many orders to claim now, and whether they are the probe: a batch; none while Zoho holds the flow
        back; one, as the probe, when a pause has run out and this replica took the probe (the others wait for
        its verdict)."""
        pauses, now = Pauses(ctx.engine), ctx.clock()
        pause = pauses.get(PAUSE_KEY)
        if not pause.paused:
            return self.batch_size, False
        if pause.holds(now) or not pauses.take_probe(PAUSE_KEY, ctx.worker_id, now):
            return 0, False
        return 1, True

    def handle(self, ctx: JobContext, outbox: Outbox, batch: Batch, row: RowMapping) -> None:
        try:
            outcome = self.fulfil(ctx, outbox, row)
        except Exception:  # the row keeps its lease; the rescuer makes it in_doubt, and the next attempt searches
            log.exception("fulfilling T2Mobile order %s failed unexpectedly", row["order_id"])
            return
        batch.record(outcome)
        metrics.ZOHO_SUBMISSIONS.labels(_result(outcome)).inc()
        if outcome.cause == PROVIDER_PAUSED:
            batch.halt()  # Zoho refuses every order now: the rest of the batch goes back, no attempt spent

    def fulfil(self, ctx: JobContext, outbox: Outbox, row: RowMapping) -> Outcome:
        """One order through Zoho, and what the answers mean for it."""
        item = check_order(row, self.config.partner.products)
        if isinstance(item, Rejection):
            return Outcome(row["id"], REJECTED, item.reason, {"reject_reason": item.reason, "last_error": item.detail},
                           order_failed(self.config, row, item.detail, item.reason))
        creating = False
        try:
            salesorder = self.adoptable(row)
            adopted = salesorder is not None
            if salesorder is None:
                customer = self.customer(row)
                if not mark_requested(ctx.engine, row["id"], ctx.worker_id, ctx.clock(),
                                      ctx.clock() + timedelta(seconds=self.call_seconds)):
                    return outbox.defer(row, ctx.clock(), LEASE_TOO_SHORT)  # written only if the lease still holds
                creating = True
                salesorder = self.client.create_salesorder(customer, item.item_id, item.rate, row["order_id"],
                                                           order=_ref(row))
                creating = False
            if salesorder.status == VOID:
                reason = f"sales order {salesorder.salesorder_number} for this reference was voided in Zoho"
                return Outcome(row["id"], FAILED, "salesorder_void",
                               {"zoho_salesorder_id": salesorder.salesorder_id, "last_error": reason},
                               order_failed(self.config, row, reason, "salesorder_void"))
            if salesorder.status == DRAFT:
                self.client.mark_open(salesorder.salesorder_id, order=_ref(row))
        except (ZohoRateLimited, ZohoDailyCapReached, ZohoAuthFailed) as exc:
            # the flow is held back for every order: this one keeps its place (and its attempt) in the queue
            if isinstance(exc, ZohoRateLimited):  # the others pause themselves in the client
                Pauses(ctx.engine).pause(PAUSE_KEY, RATE_LIMITED, exc.retry_at, ctx.clock(), exc.message)
            return outbox.defer(row, row["next_attempt_at"], PROVIDER_PAUSED, exc.message)
        except ZohoRejected as exc:
            return Outcome(row["id"], FAILED, "zoho_rejected", {"last_error": exc.message},
                           order_failed(self.config, row, exc.message, f"zoho_{exc.code}"))
        except ZohoUnavailable as exc:
            if creating and exc.may_have_arrived:
                return Outcome(row["id"], IN_DOUBT, "in_doubt", {"last_error": exc.message})
            return self.retry(outbox, row, exc.message)
        return self.completed(row, item, salesorder, adopted)

    def adoptable(self, row: Mapping) -> SalesOrder | None:
        """The sales order an earlier attempt may have created: searched only for an order that requested one."""
        if row["submitted_at"] is None:
            return None
        return self.client.find_salesorder(row["order_id"], order=_ref(row))

    def customer(self, row: Mapping) -> str:
        """The Zoho contact of the order's e-mail, created when Zoho has none."""
        email = row["customer_email"].strip()
        return (self.client.find_contact_by_email(email, order=_ref(row))
                or self.client.create_contact(row["customer_name"].strip(), email, row["customer_phone"],
                                              order=_ref(row)))

    def completed(self, row: Mapping, item: LineItem, salesorder: SalesOrder, adopted: bool) -> Outcome:
        """Completed with the licence provisioned and the partner told, all in the finalise transaction."""
        return Outcome(row["id"], COMPLETED, "adopted" if adopted else "fulfilled",
                       {"zoho_salesorder_id": salesorder.salesorder_id, "last_error": None},
                       finish=fulfilment(self.config, row, salesorder.salesorder_id, item.months))

    def retry(self, outbox: Outbox, row: Mapping, error: str) -> Outcome:
        """Certainly nothing created: try again on the schedule, or give up as dead (and tell T2Mobile)."""
        outcome = outbox.retry(row, error)
        if outcome.status == DEAD:
            return replace(outcome, events=order_failed(self.config, row, f"Zoho unavailable: {error}", "dead"))
        return outcome


def _held_back(batch: Batch) -> bool:
    return any(outcome.cause == PROVIDER_PAUSED for outcome in batch.written())


def _answered(batch: Batch) -> bool:
    """Did Zoho take the batch's calls (not refuse them all, nor were there none: a rejected order calls nothing)?"""
    return any(o.status != REJECTED and o.cause not in (PROVIDER_PAUSED, LEASE_TOO_SHORT) for o in batch.written())


def _ref(row: Mapping) -> OrderRef:
    return OrderRef(zoho_orders.name, row["id"])


def _result(outcome: Outcome) -> str:
    if outcome.status == QUEUED:
        return "retry" if outcome.cause == "retry" else "deferred"
    if outcome.status == COMPLETED and outcome.cause == "adopted":
        return "adopted"
    return outcome.status
