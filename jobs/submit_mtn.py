"""Send due MTN orders to the reseller: claim a batch, check each order (a size not on sale is rejected), lock
its recipient, send each order the balance covers (a few at a time; one it does not cover waits alone),
record what the reseller said.

The reseller has no idempotency key, so an order is never sent twice on a guess: every answer that
leaves the order's existence open makes it in_doubt, and only reconciliation against the reseller's
history may queue it again. At most one order per recipient and size is unsettled at a time, which is
what lets reconciliation recognise an in-doubt order in that history.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Iterator, Mapping

from sqlalchemy import RowMapping

from reconciler.config import Config
from reconciler.engine.job import JobContext
from reconciler.engine.outbox import Batch, Outbox, Outcome
from reconciler.engine.schema import DEAD, FAILED, IN_DOUBT, QUEUED, REJECTED, SUBMITTED, mtn_orders
from reconciler.http.audit import AuditLog
from reconciler.http.client import OrderRef
from reconciler.providers.mtn import metrics as mtn_metrics
from reconciler.providers.mtn.account import MtnAccount
from reconciler.providers.mtn.client import (
    MtnClient, MtnInDoubt, MtnInsufficientBalance, MtnRateLimited, MtnRejected, MtnUnauthorised, MtnUnreachable,
    mtn_client,
)
from reconciler.providers.mtn.events import ShopEvent, customer_events
from reconciler.providers.mtn.lifecycle import log_step
from reconciler.providers.mtn.phones import Recipient, RecipientRejected, validate_recipient
from reconciler.providers.mtn.store import lock_recipients, recipient_key, unlock_recipients

log = logging.getLogger(__name__)
NO_LOCK = {"recipient_lock": None}
AUDIT_DELAY_SECONDS = 0.05  # calls are recorded together; a crash loses at most this much of the audit


class SubmitMtn:
    """The job; between runs it keeps its client and its sending threads, so keep-alive connections last."""

    def __init__(self, config: Config) -> None:
        self.settings = config.mtn
        self.batch_size = config.daemon.batch_size
        self.client: MtnClient | None = None
        self.account: MtnAccount | None = None
        self.audit: AuditLog | None = None
        self.pool = ThreadPoolExecutor(self.settings.max_in_flight, thread_name_prefix="submit-mtn")

    def run(self, ctx: JobContext) -> None:
        """Batch after batch until none is due. The next batch is claimed once every row of this one has
        started, so its serial steps (claim, locks, finalise) run while this one's last orders are out."""
        if self.account is None:
            self.audit = AuditLog(ctx.engine, ctx.clock, max_delay_seconds=AUDIT_DELAY_SECONDS)
            self.client = mtn_client(ctx.config, ctx.engine, ctx.clock, self.audit)
            self.account = MtnAccount(ctx.engine, self.client, self.settings, ctx.worker_id)
        outbox = ctx.outboxes[mtn_orders.name]
        account = self.account
        reserve = self.settings.connect_timeout_seconds + self.settings.request_timeout_seconds
        slots = threading.Semaphore(self.settings.max_in_flight)
        refused = threading.Event()  # the reseller refused all orders (401, 402, 429): start no more
        previous: Sending | None = None
        try:
            while not (ctx.stop.is_set() or refused.is_set()) and account.is_open(ctx.clock()):
                batch = outbox.claim_batch(self.batch_size, ctx.stop, reserve_seconds=reserve)
                if not batch.rows:
                    break
                current = self.start(ctx, outbox, account, batch, slots, refused)
                finishing, previous = previous, current
                if finishing is not None:
                    self.finish(ctx, finishing)
        finally:
            if previous is not None:
                self.finish(ctx, previous)
            if self.audit is not None:
                self.audit.flush()  # nothing waits in memory once the job is idle (or stopping)

    def start(self, ctx: JobContext, outbox: Outbox, account: MtnAccount, batch: Batch,
              slots: threading.Semaphore, refused: threading.Event) -> Sending:
        """Check every row, lock recipients, and start each row as a sending slot frees up."""
        sending = Sending(batch)
        try:
            checked = {row["id"]: self.check(row) for row in batch.rows}
            recipients = {row_id: c for row_id, c in checked.items() if isinstance(c, Recipient)}
            sizes = {row["id"]: row["size_gb"] for row in batch.rows}
            sending.locked = lock_recipients(ctx.engine, ctx.worker_id, {
                row_id: recipient_key(r.phone, sizes[row_id]) for row_id, r in recipients.items()}, ctx.clock())
            affordable = account.affordable({row["id"]: sizes[row["id"]] for row in batch.rows
                                             if row["id"] in sending.locked}, ctx.clock())

            for row in _paced(batch, slots, refused):
                check = checked[row["id"]]
                if row["id"] in affordable:
                    sending.futures.append(self.pool.submit(self._send_in_slot, ctx, outbox, account, batch, row,
                                                            check, slots, refused))
                    continue
                slots.release()
                if isinstance(check, RecipientRejected):
                    record(batch, rejected(row, check))
                elif row["id"] not in sending.locked:
                    # Another order to this recipient and size is unsettled: wait, spending no attempt.
                    retry_at = ctx.clock() + timedelta(seconds=self.settings.reconcile_interval_seconds)
                    record(batch, outbox.defer(row, retry_at, "recipient_busy"))
                else:  # the balance does not cover this one now: it waits for a new reading, the others go on
                    until = account.balance_recheck_at(ctx.clock())
                    record(batch, with_fields(outbox.defer(row, until, "insufficient_balance"), NO_LOCK))
        except BaseException:
            self.finish(ctx, sending)  # what was started is finalised, the rest handed back
            raise
        return sending

    def finish(self, ctx: JobContext, sending: Sending) -> None:
        """Wait for the batch's orders to come back, then finalise their outcomes."""
        wait(sending.futures)
        batch = sending.batch
        unlock_recipients(ctx.engine, ctx.worker_id, [i for i in batch.unstarted() if i in sending.locked])
        batch.close()
        rows = {row["id"]: row for row in batch.rows}
        for outcome in batch.written():
            log_step(rows[outcome.row_id], outcome)

    def check(self, row: Mapping) -> Recipient | RecipientRejected:
        if row["size_gb"] is None:
            return RecipientRejected("invalid_size", "no size_gb given")
        if row["size_gb"] <= 0:
            return RecipientRejected("invalid_size", f"size_gb must be a positive whole number, got {row['size_gb']}")
        if row["size_gb"] not in self.settings.bundles:
            on_sale = ", ".join(str(size) for size in sorted(self.settings.bundles))
            return RecipientRejected("size_not_sold", f"{row['size_gb']} GB is not on sale (mtn.bundles: {on_sale} GB)")
        try:
            return validate_recipient(row["recipient_phone"], row["network"],
                                      check_prefix=self.settings.check_network_prefix)
        except RecipientRejected as rejection:
            return rejection

    def _send_in_slot(self, ctx: JobContext, outbox: Outbox, account: MtnAccount, batch: Batch, row: RowMapping,
                      recipient: Recipient, slots: threading.Semaphore, refused: threading.Event) -> None:
        try:
            record(batch, self.send(ctx, outbox, account, refused, row, recipient))
        except Exception:  # the row keeps its lease; the rescuer makes it in_doubt
            log.exception("sending MTN order %s failed unexpectedly", row["shop_order_id"])
        finally:
            slots.release()

    def send(self, ctx: JobContext, outbox: Outbox, account: MtnAccount, refused: threading.Event, row: RowMapping,
             recipient: Recipient) -> Outcome:
        """One POST /api/orders, and what its answer means for the order."""
        sent_at = ctx.clock()
        assert self.client is not None
        try:
            provider_order_id = self.client.create_order(recipient.phone, recipient.network, row["size_gb"],
                                                         OrderRef(mtn_orders.name, row["id"]))
        except MtnInDoubt as exc:
            return Outcome(row["id"], IN_DOUBT, "in_doubt", {"submitted_at": sent_at, "last_error": exc.message})
        except MtnRejected as exc:
            return Outcome(row["id"], FAILED, "provider_rejected", {**NO_LOCK, "last_error": exc.message},
                           customer_events(row, ShopEvent.ORDER_FAILED, FAILED, reason=exc.message))
        except (MtnUnauthorised, MtnInsufficientBalance, MtnRateLimited) as exc:
            refused.set()
            account.refused(exc, ctx.clock())
            # the pause holds every order back and may end early (a probe, `reconciler resume`): keep its place
            return with_fields(outbox.defer(row, row["next_attempt_at"], "provider_paused", exc.message), NO_LOCK)
        except MtnUnreachable as exc:
            return retry(outbox, row, exc.message)
        return Outcome(row["id"], SUBMITTED, "submitted", {
            "provider_order_id": provider_order_id, "submitted_at": sent_at, "last_error": None})


@dataclass
class Sending:
    """A batch whose rows are going out: the sends under way and the recipient locks it holds."""

    batch: Batch
    locked: set[int] = field(default_factory=set)
    futures: list[Future] = field(default_factory=list)


def _paced(batch: Batch, slots: threading.Semaphore, refused: threading.Event) -> Iterator[RowMapping]:
    """The batch's rows, each started only once a slot is free: a row waiting for a slot is not started,
    so the batch's lease check runs right before the row really goes out. The caller frees each slot."""
    rows = iter(batch)
    while slots.acquire():
        if refused.is_set():
            batch.halt()
        row = next(rows, None)
        if row is None:
            slots.release()
            return
        yield row


def record(batch: Batch, outcome: Outcome) -> None:
    batch.record(outcome)
    result = outcome.status if outcome.status != QUEUED else ("deferred" if outcome.cause != "retry" else "retry")
    mtn_metrics.MTN_SUBMISSIONS.labels(result).inc()


def rejected(row: Mapping, rejection: RecipientRejected) -> Outcome:
    return Outcome(row["id"], REJECTED, rejection.reason, {"reject_reason": rejection.reason,
                                                           "last_error": rejection.detail},
                   customer_events(row, ShopEvent.ORDER_REJECTED, REJECTED, reason=rejection.reason))


def retry(outbox: Outbox, row: Mapping, error: str) -> Outcome:
    """Certainly not sent: try again on the schedule, or give up as dead (and tell the shop)."""
    outcome = with_fields(outbox.retry(row, error), NO_LOCK)
    if outcome.status == DEAD:
        return replace(outcome, events=customer_events(row, ShopEvent.ORDER_DEAD, DEAD, reason=error))
    return outcome


def with_fields(outcome: Outcome, fields: Mapping) -> Outcome:
    return replace(outcome, fields={**outcome.fields, **fields})
